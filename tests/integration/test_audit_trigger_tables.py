"""audit_trigger against real schemas: partitioned tables and their partitions (PostgreSQL 15)."""

from __future__ import annotations

from tests.integration.test_audit_trigger import info, log_rows, q, run


def _partitioned(cluster, database):
    q(
        cluster,
        database,
        "CREATE TABLE ev (id int, at date, kind text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);"
        "CREATE TABLE ev_2026 PARTITION OF ev FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');"
        "CREATE TABLE ev_2027 PARTITION OF ev FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')",
    )


def _statement_triggers(cluster, database, table):
    return q(
        cluster,
        database,
        "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal AND tgparentid = 0 ORDER BY 1",
        (table,),
    )


def test_every_write_into_a_partition_is_logged(pg_cluster, pg_database):
    db = pg_database
    _partitioned(pg_cluster, db)
    first = run(pg_cluster, db, tables=["ev"])
    assert first["changed"] is True, first
    assert "create trigger locksmith_audit_partition_truncate on public.ev_2026" in first["actions"]
    assert not first.get("warnings"), first["warnings"]  # partitions have their parent's key
    assert run(pg_cluster, db, tables=["ev"])["changed"] is False
    q(pg_cluster, db, "INSERT INTO ev VALUES (1, '2026-03-01', 'routed'), (2, '2027-03-01', 'routed')")
    q(pg_cluster, db, "TRUNCATE ev_2027")  # one partition: its rows are gone, so it must be logged
    rows = [(r[0], r[1], r[3], r[4]) for r in log_rows(pg_cluster, db)]
    assert rows == [
        ("INSERT", "row", "ev_2026", {"id": 1, "at": "2026-03-01"}),
        ("INSERT", "row", "ev_2027", {"id": 2, "at": "2027-03-01"}),
        ("TRUNCATE", "statement", "ev_2027", None),
    ]

    # Statement capture: a statement naming a partition is logged once, under the partition.
    switched = run(pg_cluster, db, tables=["ev"], capture="statement")
    assert switched["changed"] is True, switched
    assert run(pg_cluster, db, tables=["ev"], capture="statement")["changed"] is False
    q(pg_cluster, db, "INSERT INTO ev_2026 VALUES (3, '2026-04-01', 'direct'); INSERT INTO ev VALUES (4, '2026-05-01')")
    q(pg_cluster, db, "UPDATE ev_2026 SET kind = 'x'; DELETE FROM ev_2026 WHERE id = 3")
    rows = [(r[0], r[3]) for r in log_rows(pg_cluster, db, "capture = 'statement' AND operation <> 'TRUNCATE'")]
    assert rows == [("INSERT", "ev_2026"), ("INSERT", "ev"), ("UPDATE", "ev_2026"), ("DELETE", "ev_2026")]

    # And back to row capture: the partitions' statement triggers never clash with the cloned row triggers.
    back = run(pg_cluster, db, tables=["ev"])
    assert back["changed"] is True, back
    assert _statement_triggers(pg_cluster, db, "ev_2026") == [("locksmith_audit_partition_truncate",)]
    removed = run(pg_cluster, db, tables=["ev"], state="absent")
    assert "drop trigger locksmith_audit_partition_truncate on public.ev_2027" in removed["actions"]
    assert _statement_triggers(pg_cluster, db, "ev_2026") == [] and _statement_triggers(pg_cluster, db, "ev") == []


def test_a_partition_named_directly_is_refused(pg_cluster, pg_database):
    db = pg_database
    _partitioned(pg_cluster, db)
    refused = run(pg_cluster, db, tables=["ev_2026"])
    assert refused["failed"] is True
    assert refused["msg"].startswith("tables[0] 'public.ev_2026' is a partition of public.ev; list public.ev")
    assert refused["executed_queries"] == []
    assert run(pg_cluster, db, tables=["ev"])["changed"] is True
    again = run(pg_cluster, db, tables=["ev", "ev_2027"])
    assert again["failed"] is True and again["msg"].startswith("tables[1] 'public.ev_2027' is a partition of")


def test_a_trigger_switched_off_on_a_partition_or_for_replicas_only_is_repaired(pg_cluster, pg_database):
    """The table's owner can switch a cloned row trigger off on one partition, or make a trigger fire in replica
    sessions only ('R'): either way ordinary writes go unlogged, so both are drift that a run repairs."""
    db = pg_database
    _partitioned(pg_cluster, db)
    run(pg_cluster, db, tables=["ev"])
    q(pg_cluster, db, "ALTER TABLE ev_2027 DISABLE TRIGGER locksmith_audit_insert")
    q(pg_cluster, db, "CREATE TABLE plain (id int PRIMARY KEY)")
    run(pg_cluster, db, tables=["plain"])
    q(pg_cluster, db, "ALTER TABLE plain ENABLE REPLICA TRIGGER locksmith_audit_delete")

    listed = info(pg_cluster, db)["tables"]
    assert listed["public.ev"]["locksmith_audit_insert"]["enabled"] is False, listed
    assert listed["public.plain"]["locksmith_audit_delete"]["enabled"] is False, listed
    assert listed["public.ev"]["locksmith_audit_update"]["enabled"] is True, listed

    predicted = run(pg_cluster, db, tables=["ev", "plain"], check=True, diff=True)
    assert predicted["changed"] is True, predicted
    assert sorted(a for a in predicted["actions"] if "trigger" in a) == [
        "replace trigger locksmith_audit_delete on public.plain",
        "replace trigger locksmith_audit_insert on public.ev",
    ], predicted["actions"]
    repaired = run(pg_cluster, db, tables=["ev", "plain"])
    assert repaired["actions"] == predicted["actions"], repaired
    assert run(pg_cluster, db, tables=["ev", "plain"])["changed"] is False
    assert q(
        pg_cluster,
        db,
        "SELECT tgenabled FROM pg_trigger WHERE tgname = 'locksmith_audit_insert' AND tgrelid = 'ev_2027'::regclass",
    ) == [("O",)]

    q(pg_cluster, db, "INSERT INTO ev VALUES (5, '2027-06-01', 'x'); INSERT INTO plain VALUES (1)")
    q(pg_cluster, db, "DELETE FROM plain")
    rows = [(r[0], r[3]) for r in log_rows(pg_cluster, db)]
    assert rows == [("INSERT", "ev_2027"), ("INSERT", "plain"), ("DELETE", "plain")], rows


def test_a_detached_partition_loses_the_triggers_it_got_as_a_partition(pg_cluster, pg_database):
    db = pg_database
    _partitioned(pg_cluster, db)
    assert run(pg_cluster, db, tables=["ev"])["changed"] is True
    q(pg_cluster, db, "ALTER TABLE ev DETACH PARTITION ev_2027")
    # PostgreSQL drops the row trigger clones on detach, not the statement-level triggers made for the partition.
    assert _statement_triggers(pg_cluster, db, "ev_2027") == [("locksmith_audit_partition_truncate",)]
    predicted = run(pg_cluster, db, check=True, tables=["ev"])
    assert predicted["actions"] == [
        "drop trigger locksmith_audit_partition_truncate on public.ev_2027 (no longer a partition)"
    ]
    # Nor does it keep drop_log from dropping the log with the parent's audit.
    dropping = run(pg_cluster, db, check=True, tables=["ev"], state="absent", drop_log=True)
    assert dropping.get("failed") is None and "drop audit schema audit with its log" in dropping["actions"], dropping
    assert predicted["actions"][0] in dropping["actions"]
    assert run(pg_cluster, db, tables=["ev"])["actions"] == predicted["actions"]
    assert _statement_triggers(pg_cluster, db, "ev_2027") == []
    q(pg_cluster, db, "TRUNCATE ev_2027")
    assert [r[3] for r in log_rows(pg_cluster, db)] == []
    assert run(pg_cluster, db, tables=["ev"])["changed"] is False
    assert _statement_triggers(pg_cluster, db, "ev_2026") == [("locksmith_audit_partition_truncate",)]
