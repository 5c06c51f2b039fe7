"""audit_trigger on tables whose names need quoting (ORM camelCase, spaces, quotes, array delimiters)."""

from __future__ import annotations

from tests.integration.test_audit_trigger import info, log_rows, q, run

# Each name is one an ORM or a hurried CREATE TABLE can make; the last ones also break text[] literals.
_COLUMNS = ('"passwordHash"', '"first name"', '"a,b"', '"x""y"', '"{c}"', '"back\\slash"')


def _awkward(cluster, database):
    q(cluster, database, "CREATE SCHEMA shop")
    q(
        cluster,
        database,
        'CREATE TABLE shop."Order Items" ("Order-Id" int, "line no" int, %s text, '
        'PRIMARY KEY ("Order-Id", "line no"))' % " text, ".join(_COLUMNS),
    )


def test_quoted_names_are_logged_whole_and_diffed(pg_cluster, pg_database):
    db = pg_database
    _awkward(pg_cluster, db)
    first = run(pg_cluster, db, schema="shop", diff_only=True)
    assert first["changed"] is True, first
    assert run(pg_cluster, db, schema="shop", diff_only=True)["changed"] is False
    q(
        pg_cluster,
        db,
        "INSERT INTO shop.\"Order Items\" VALUES (1, 2, 'h', 'ann', 'ab', 'xy', 'c', 'bs')",
    )
    q(pg_cluster, db, 'UPDATE shop."Order Items" SET "first name" = \'anna\', "a,b" = \'AB\'')
    q(pg_cluster, db, 'UPDATE shop."Order Items" SET "x""y" = \'XY\', "back\\slash" = \'BS\'')
    rows = log_rows(pg_cluster, db)
    assert [r[0] for r in rows] == ["INSERT", "UPDATE", "UPDATE"]
    assert rows[0][2:4] == ("shop", "Order Items")
    assert rows[0][4] == {"Order-Id": 1, "line no": 2}
    assert rows[1][5:7] == ({"first name": "ann", "a,b": "ab"}, {"first name": "anna", "a,b": "AB"})
    assert rows[2][5:7] == ({'x"y': "xy", "back\\slash": "bs"}, {'x"y': "XY", "back\\slash": "BS"})
    listed = info(pg_cluster, db)
    assert list(listed["tables"]) == ["shop.Order Items"], listed


def test_a_quoted_column_can_be_excluded(pg_cluster, pg_database):
    db = pg_database
    _awkward(pg_cluster, db)
    # Written as in SQL: a name that needs quoting is given in double quotes ("" for a quote in it).
    tables = ['shop."Order Items"']
    done = run(pg_cluster, db, tables=tables, exclude_columns=["passwordHash", '"first name"', '"x""y"'])
    assert done["changed"] is True, done
    assert (
        run(pg_cluster, db, tables=tables, exclude_columns=["passwordHash", '"first name"', '"x""y"'])["changed"]
        is False
    )
    q(pg_cluster, db, 'INSERT INTO shop."Order Items" ("Order-Id", "line no", "passwordHash") VALUES (1, 1, \'h\')')
    q(pg_cluster, db, 'UPDATE shop."Order Items" SET "passwordHash" = \'i\', "x""y" = \'z\'')  # only excluded ones
    q(pg_cluster, db, 'UPDATE shop."Order Items" SET "a,b" = \'ab\'')
    rows = log_rows(pg_cluster, db)
    assert [r[0] for r in rows] == ["INSERT", "UPDATE"]
    assert sorted(rows[0][6]) == ["Order-Id", "a,b", "back\\slash", "line no", "{c}"]
    assert sorted(rows[1][6]) == sorted(rows[1][5]) == ["Order-Id", "a,b", "back\\slash", "line no", "{c}"]


def test_unquoted_names_that_need_quotes_are_refused_with_the_way_to_write_them(pg_cluster, pg_database):
    db = pg_database
    _awkward(pg_cluster, db)
    for args, option in (
        ({"tables": ["shop.Order Items"]}, "tables[0]"),
        ({"tables": ['shop."Order Items"'], "exclude_columns": ["first name"]}, "exclude_columns[0]"),
        ({"tables": ['shop."Order Items'], "exclude_columns": []}, "tables[0]"),
        ({"tables": ['shop."Order\nItems"']}, "tables[0]"),
    ):
        refused = run(pg_cluster, db, **args)
        assert refused["failed"] is True and refused["executed_queries"] == [], refused
        assert refused["msg"].startswith(option + " ") and "double quotes" in refused["msg"], refused["msg"]
    # A quoted name is only a name: one that does not exist is said so, and nothing is made.
    missing = run(pg_cluster, db, tables=['"users\'; DROP TABLE shop.""Order Items""; --"'])
    assert missing["failed"] is True and "does not exist" in missing["msg"], missing
    assert q(pg_cluster, db, "SELECT count(*) FROM pg_namespace WHERE nspname = 'audit'") == [(0,)]
