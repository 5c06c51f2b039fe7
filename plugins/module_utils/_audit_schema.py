# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""The audit schema as numbered migrations: the log, its partitions, the trigger and retention functions.

Each migration is a list of SQL templates. ``{s}`` is the audit schema (a psycopg2.sql.Identifier) and
``{s_lit}`` the same name as a literal; nothing else is ever formatted in. Migrations only ever append:
a released one is never edited, so ``schema_version`` tells exactly which objects exist.

Every function has a fixed, empty search_path and names every object with its schema, so a role that
creates look-alike objects in its own schema cannot take over a SECURITY DEFINER function.
"""

from __future__ import annotations

# Appended to by migrations; the operations the log may hold.
LOG_OPERATIONS = ("INSERT", "UPDATE", "DELETE", "TRUNCATE", "RETENTION")

_V1 = [
    "CREATE SCHEMA {s}",
    "REVOKE ALL ON SCHEMA {s} FROM PUBLIC",
    """CREATE TABLE {s}.schema_version (
    version integer PRIMARY KEY,
    description text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT pg_catalog.now()
)""",
    # Partitioned by month on the clock time of the change: retention drops whole partitions.
    """CREATE TABLE {s}.log (
    id bigserial NOT NULL,
    logged_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    statement_at timestamptz NOT NULL DEFAULT pg_catalog.statement_timestamp(),
    transaction_id bigint,
    operation text NOT NULL
        CHECK (operation IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'RETENTION')),
    capture text NOT NULL DEFAULT 'row' CHECK (capture IN ('row', 'statement', 'system')),
    schema_name text NOT NULL,
    table_name text NOT NULL,
    record_key jsonb,
    old_data jsonb,
    new_data jsonb,
    query text,
    db_role text NOT NULL DEFAULT session_user,
    session_role text NOT NULL DEFAULT session_user,
    application_name text,
    client_addr inet,
    app_user_id text
) PARTITION BY RANGE (logged_at)""",
    # Rows outside every monthly partition land here, so an insert never fails.
    "CREATE TABLE {s}.log_default PARTITION OF {s}.log DEFAULT",
    "CREATE INDEX log_logged_at_brin ON {s}.log USING brin (logged_at)",
    "CREATE INDEX log_record_idx ON {s}.log (schema_name, table_name, record_key)",
    # args: diff_only, app_user_setting, excluded columns and the table's other columns (text[] literals),
    # then the primary key columns. Written for speed: plain TG_ARGV reads, array parsing only when needed,
    # the UPDATE diff from the known column list without a query, and one INSERT.
    """CREATE FUNCTION {s}.log_row() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $locksmith$
DECLARE
    old_j jsonb;
    new_j jsonb;
    rec_key jsonb;
    cols text[];
    col text;
    diff_old jsonb;
    diff_new jsonb;
    role_setting text := pg_catalog.current_setting('role');
BEGIN
    IF TG_OP <> 'DELETE' THEN
        new_j := pg_catalog.to_jsonb(NEW);
    END IF;
    IF TG_OP <> 'INSERT' THEN
        old_j := pg_catalog.to_jsonb(OLD);
    END IF;
    IF TG_NARGS = 5 THEN
        rec_key := pg_catalog.jsonb_build_object(TG_ARGV[4], COALESCE(new_j, old_j) -> TG_ARGV[4]);
    ELSIF TG_NARGS > 5 THEN
        rec_key := '{{}}'::jsonb;
        FOR i IN 4 .. TG_NARGS - 1 LOOP
            rec_key := rec_key || pg_catalog.jsonb_build_object(TG_ARGV[i], COALESCE(new_j, old_j) -> TG_ARGV[i]);
        END LOOP;
    END IF;
    IF TG_ARGV[2] <> '{{}}' THEN
        new_j := new_j - TG_ARGV[2]::text[];
        old_j := old_j - TG_ARGV[2]::text[];
    END IF;
    IF TG_OP = 'UPDATE' AND TG_ARGV[0] = 'true' THEN
        cols := TG_ARGV[3]::text[];
        diff_old := '{{}}'::jsonb;
        diff_new := '{{}}'::jsonb;
        FOREACH col IN ARRAY cols LOOP
            IF (new_j -> col) IS DISTINCT FROM (old_j -> col) THEN
                diff_old := diff_old || pg_catalog.jsonb_build_object(col, old_j -> col);
                diff_new := diff_new || pg_catalog.jsonb_build_object(col, new_j -> col);
            END IF;
        END LOOP;
        -- Columns added since the trigger was created are still compared, the slow way.
        IF (new_j - cols) IS DISTINCT FROM (old_j - cols) THEN
            SELECT diff_old || COALESCE(pg_catalog.jsonb_object_agg(n.key, old_j -> n.key), '{{}}'),
                   diff_new || COALESCE(pg_catalog.jsonb_object_agg(n.key, n.value), '{{}}')
              INTO diff_old, diff_new
              FROM pg_catalog.jsonb_each(new_j - cols) AS n
             WHERE n.value IS DISTINCT FROM old_j -> n.key;
        END IF;
        old_j := diff_old;
        new_j := diff_new;
    END IF;
    INSERT INTO {s}.log (transaction_id, operation, capture, schema_name, table_name, record_key,
                         old_data, new_data, db_role, session_role, application_name, client_addr, app_user_id)
    VALUES (pg_catalog.txid_current(), TG_OP, 'row', TG_TABLE_SCHEMA, TG_TABLE_NAME, rec_key, old_j, new_j,
            CASE WHEN role_setting = 'none' THEN session_user ELSE role_setting END, session_user,
            pg_catalog.current_setting('application_name'), pg_catalog.inet_client_addr(),
            NULLIF(pg_catalog.current_setting(TG_ARGV[1], true), ''));
    RETURN NULL;
END
$locksmith$""",
    # args: app_user_setting. One entry per statement, with the statement text and no row data.
    """CREATE FUNCTION {s}.log_statement() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $locksmith$
DECLARE
    role_setting text := pg_catalog.current_setting('role');
BEGIN
    INSERT INTO {s}.log (transaction_id, operation, capture, schema_name, table_name, query,
                         db_role, session_role, application_name, client_addr, app_user_id)
    VALUES (pg_catalog.txid_current(), TG_OP, 'statement', TG_TABLE_SCHEMA, TG_TABLE_NAME,
            pg_catalog.current_query(),
            CASE WHEN role_setting = 'none' THEN session_user ELSE role_setting END, session_user,
            pg_catalog.current_setting('application_name'), pg_catalog.inet_client_addr(),
            NULLIF(pg_catalog.current_setting(TG_ARGV[0], true), ''));
    RETURN NULL;
END
$locksmith$""",
    """CREATE FUNCTION {s}.partition_name(month date) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = '' AS $locksmith$
    SELECT 'log_p' OPERATOR(pg_catalog.||) pg_catalog.to_char(month, 'YYYYMM')
$locksmith$""",
    # Creates the partition of one UTC month; rows of that month waiting in the default partition move in.
    """CREATE FUNCTION {s}.create_partition(month date) RETURNS text
LANGUAGE plpgsql SET search_path = '' AS $locksmith$
DECLARE
    schema_name constant text := {s_lit};
    first_day date := pg_catalog.date_trunc('month', month)::date;
    lower_ts timestamptz := first_day::timestamp AT TIME ZONE 'UTC';
    upper_ts timestamptz := (first_day + interval '1 month')::timestamp AT TIME ZONE 'UTC';
    part text := {s}.partition_name(first_day);
BEGIN
    IF pg_catalog.to_regclass(pg_catalog.format('%I.%I', schema_name, part)) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE pg_catalog.format('CREATE TABLE %I.%I (LIKE %I.log INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                              schema_name, part, schema_name);
    EXECUTE pg_catalog.format('REVOKE ALL ON %I.%I FROM PUBLIC', schema_name, part);
    EXECUTE pg_catalog.format(
        'WITH moved AS (DELETE FROM %I.log_default WHERE logged_at >= $1 AND logged_at < $2 RETURNING *) '
        'INSERT INTO %I.%I SELECT * FROM moved', schema_name, schema_name, part) USING lower_ts, upper_ts;
    EXECUTE pg_catalog.format('ALTER TABLE %I.log ATTACH PARTITION %I.%I FOR VALUES FROM (%L) TO (%L)',
                              schema_name, schema_name, part, lower_ts, upper_ts);
    RETURN part;
END
$locksmith$""",
    # What maintain() would do, read-only: months to create (as_of .. + months_ahead) and partitions
    # wholly older than retention_days to drop, including months that only exist in the default partition.
    """CREATE FUNCTION {s}.partition_plan(months_ahead integer, retention_days integer,
                                  as_of timestamptz DEFAULT pg_catalog.clock_timestamp())
RETURNS TABLE (action text, partition_name text, range_from timestamptz, range_to timestamptz)
LANGUAGE plpgsql STABLE SET search_path = '' AS $locksmith$
DECLARE
    schema_name constant text := {s_lit};
    this_month date := pg_catalog.date_trunc('month', as_of AT TIME ZONE 'UTC')::date;
    cutoff timestamptz := as_of - pg_catalog.make_interval(days => retention_days);
    m date;
BEGIN
    FOR i IN 0 .. GREATEST(months_ahead, 0) LOOP
        m := (this_month + pg_catalog.make_interval(months => i))::date;
        IF pg_catalog.to_regclass(pg_catalog.format('%I.%I', schema_name, {s}.partition_name(m))) IS NULL THEN
            action := 'create'; partition_name := {s}.partition_name(m);
            range_from := m::timestamp AT TIME ZONE 'UTC';
            range_to := (m + interval '1 month')::timestamp AT TIME ZONE 'UTC';
            RETURN NEXT;
        END IF;
    END LOOP;
    IF retention_days IS NULL OR retention_days <= 0 THEN
        RETURN;
    END IF;
    FOR m IN
        SELECT pg_catalog.to_date(pg_catalog.substr(c.relname, 6), 'YYYYMM')
          FROM pg_catalog.pg_inherits AS i
          JOIN pg_catalog.pg_class AS c ON c.oid = i.inhrelid
         WHERE i.inhparent = pg_catalog.to_regclass(pg_catalog.format('%I.log', schema_name))
           AND c.relname OPERATOR(pg_catalog.~) '^log_p[0-9]{{6}}$'
        UNION
        SELECT DISTINCT pg_catalog.date_trunc('month', d.logged_at AT TIME ZONE 'UTC')::date
          FROM {s}.log_default AS d
         WHERE d.logged_at < cutoff
        ORDER BY 1
    LOOP
        IF ((m + interval '1 month')::timestamp AT TIME ZONE 'UTC') <= cutoff THEN
            action := 'drop'; partition_name := {s}.partition_name(m);
            range_from := m::timestamp AT TIME ZONE 'UTC';
            range_to := (m + interval '1 month')::timestamp AT TIME ZONE 'UTC';
            RETURN NEXT;
        END IF;
    END LOOP;
END
$locksmith$""",
    # Runs partition_plan; logs every retention drop in the log itself. A systemd timer or pg_cron calls it.
    """CREATE FUNCTION {s}.maintain(retention_days integer, months_ahead integer,
                            as_of timestamptz DEFAULT pg_catalog.clock_timestamp())
RETURNS TABLE (action text, partition_name text, range_from timestamptz, range_to timestamptz)
LANGUAGE plpgsql SET search_path = '' AS $locksmith$
DECLARE
    schema_name constant text := {s_lit};
    dropped text[] := '{{}}';
    step record;
BEGIN
    FOR step IN SELECT * FROM {s}.partition_plan(months_ahead, retention_days, as_of) LOOP
        PERFORM {s}.create_partition((step.range_from AT TIME ZONE 'UTC')::date);
        IF step.action = 'drop' THEN
            EXECUTE pg_catalog.format('DROP TABLE %I.%I', schema_name, step.partition_name);
            dropped := dropped OPERATOR(pg_catalog.||) step.partition_name;
        END IF;
        action := step.action; partition_name := step.partition_name;
        range_from := step.range_from; range_to := step.range_to;
        RETURN NEXT;
    END LOOP;
    IF pg_catalog.cardinality(dropped) > 0 THEN
        INSERT INTO {s}.log (transaction_id, operation, capture, schema_name, table_name, new_data,
                             application_name, client_addr)
        VALUES (pg_catalog.txid_current(), 'RETENTION', 'system', schema_name, 'log',
                pg_catalog.jsonb_build_object('dropped_partitions', dropped, 'retention_days', retention_days,
                                              'cutoff', as_of - pg_catalog.make_interval(days => retention_days)),
                pg_catalog.current_setting('application_name'), pg_catalog.inet_client_addr());
    END IF;
END
$locksmith$""",
    # Only the owner (and superusers) run these; triggers fire whatever the caller's EXECUTE rights.
    "REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {s} FROM PUBLIC",
    "REVOKE ALL ON ALL TABLES IN SCHEMA {s} FROM PUBLIC",
    "REVOKE ALL ON ALL SEQUENCES IN SCHEMA {s} FROM PUBLIC",
]

# Version 2: a cheaper row trigger. Each audited row runs the log INSERT as its own statement, so what
# that statement sets up per execution (CHECK constraint expressions, the function body's extra steps)
# is paid per row. Measured per row on this project's benchmark machine: docs/audit.md.
_V2 = [
    # Only the trigger and retention functions write the log, and they write fixed values: the CHECKs
    # guarded nobody and cost about 8 us a row. Partitions made by create_partition() v1 hold copies.
    "ALTER TABLE {s}.log DROP CONSTRAINT IF EXISTS log_operation_check",
    "ALTER TABLE {s}.log DROP CONSTRAINT IF EXISTS log_capture_check",
    """DO $locksmith$
DECLARE
    part regclass;
BEGIN
    FOR part IN SELECT i.inhrelid::regclass FROM pg_catalog.pg_inherits AS i
                 WHERE i.inhparent = pg_catalog.to_regclass(pg_catalog.format('%I.log', {s_lit}::text)) LOOP
        EXECUTE pg_catalog.format('ALTER TABLE %s DROP CONSTRAINT IF EXISTS log_operation_check, '
                                  'DROP CONSTRAINT IF EXISTS log_capture_check', part);
    END LOOP;
END
$locksmith$""",
    # Same arguments as version 1, so triggers made by version 1 keep working unchanged. Changes: the
    # session values are read inside the INSERT (no extra assignment), and diff_only looks for columns
    # added since the trigger was made with one jsonb delete instead of two and a comparison.
    """CREATE OR REPLACE FUNCTION {s}.log_row() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $locksmith$
DECLARE
    old_j jsonb;
    new_j jsonb;
    rec_key jsonb;
    cols text[];
    col text;
    diff_old jsonb;
    diff_new jsonb;
BEGIN
    IF TG_OP <> 'DELETE' THEN
        new_j := pg_catalog.to_jsonb(NEW);
    END IF;
    IF TG_OP <> 'INSERT' THEN
        old_j := pg_catalog.to_jsonb(OLD);
    END IF;
    IF TG_NARGS = 5 THEN
        rec_key := pg_catalog.jsonb_build_object(TG_ARGV[4], COALESCE(new_j, old_j) -> TG_ARGV[4]);
    ELSIF TG_NARGS > 5 THEN
        rec_key := '{{}}'::jsonb;
        FOR i IN 4 .. TG_NARGS - 1 LOOP
            rec_key := rec_key || pg_catalog.jsonb_build_object(TG_ARGV[i], COALESCE(new_j, old_j) -> TG_ARGV[i]);
        END LOOP;
    END IF;
    IF TG_ARGV[2] <> '{{}}' THEN
        cols := TG_ARGV[2]::text[];
        new_j := new_j - cols;
        old_j := old_j - cols;
    END IF;
    IF TG_ARGV[0] = 'true' AND TG_OP = 'UPDATE' THEN
        cols := TG_ARGV[3]::text[];
        diff_old := '{{}}';
        diff_new := '{{}}';
        FOREACH col IN ARRAY cols LOOP
            IF (new_j -> col) IS DISTINCT FROM (old_j -> col) THEN
                diff_old := diff_old || pg_catalog.jsonb_build_object(col, old_j -> col);
                diff_new := diff_new || pg_catalog.jsonb_build_object(col, new_j -> col);
            END IF;
        END LOOP;
        -- Columns added since the trigger was created are still compared, the slow way; one jsonb
        -- delete tells whether there are any.
        IF (new_j - cols) <> '{{}}' THEN
            SELECT diff_old || COALESCE(pg_catalog.jsonb_object_agg(n.key, old_j -> n.key), '{{}}'),
                   diff_new || COALESCE(pg_catalog.jsonb_object_agg(n.key, n.value), '{{}}')
              INTO diff_old, diff_new
              FROM pg_catalog.jsonb_each(new_j - cols) AS n
             WHERE n.value IS DISTINCT FROM old_j -> n.key;
        END IF;
        old_j := diff_old;
        new_j := diff_new;
    END IF;
    INSERT INTO {s}.log (transaction_id, operation, capture, schema_name, table_name, record_key,
                         old_data, new_data, db_role, session_role, application_name, client_addr, app_user_id)
    VALUES (pg_catalog.txid_current(), TG_OP, 'row', TG_TABLE_SCHEMA, TG_TABLE_NAME, rec_key, old_j, new_j,
            COALESCE(NULLIF(pg_catalog.current_setting('role'), 'none'), session_user), session_user,
            pg_catalog.current_setting('application_name'), pg_catalog.inet_client_addr(),
            NULLIF(pg_catalog.current_setting(TG_ARGV[1], true), ''));
    RETURN NULL;
END
$locksmith$""",
    # New partitions get no CHECK copies (LIKE ... INCLUDING CONSTRAINTS would bring them back).
    """CREATE OR REPLACE FUNCTION {s}.create_partition(month date) RETURNS text
LANGUAGE plpgsql SET search_path = '' AS $locksmith$
DECLARE
    schema_name constant text := {s_lit};
    first_day date := pg_catalog.date_trunc('month', month)::date;
    lower_ts timestamptz := first_day::timestamp AT TIME ZONE 'UTC';
    upper_ts timestamptz := (first_day + interval '1 month')::timestamp AT TIME ZONE 'UTC';
    part text := {s}.partition_name(first_day);
BEGIN
    IF pg_catalog.to_regclass(pg_catalog.format('%I.%I', schema_name, part)) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE pg_catalog.format('CREATE TABLE %I.%I (LIKE %I.log INCLUDING DEFAULTS)', schema_name, part, schema_name);
    EXECUTE pg_catalog.format('REVOKE ALL ON %I.%I FROM PUBLIC', schema_name, part);
    EXECUTE pg_catalog.format(
        'WITH moved AS (DELETE FROM %I.log_default WHERE logged_at >= $1 AND logged_at < $2 RETURNING *) '
        'INSERT INTO %I.%I SELECT * FROM moved', schema_name, schema_name, part) USING lower_ts, upper_ts;
    EXECUTE pg_catalog.format('ALTER TABLE %I.log ATTACH PARTITION %I.%I FOR VALUES FROM (%L) TO (%L)',
                              schema_name, schema_name, part, lower_ts, upper_ts);
    RETURN part;
END
$locksmith$""",
]

# The role the trigger functions run as (SECURITY DEFINER runs as the owner). One per cluster, shared by every
# database's audit schema; it may only insert into the log.
WRITER_ROLE = "locksmith_audit_writer"

# Version 3: the trigger functions run as WRITER_ROLE, not as the role that ran the module (a superuser, as a
# rule). to_jsonb(NEW) calls any cast to json that the owner of a column's type created, so the owner of an
# audited table could add a column of their own enum with a cast whose function runs ALTER ROLE ... SUPERUSER
# inside the trigger, as the function's owner. Run as WRITER_ROLE, such code can insert log rows and nothing
# else (the DDL guard below keeps it from dropping or changing the functions). The grants are kept by the
# module's grant reconciliation (USAGE on the schema, INSERT on the log), the sequence here.
_V3 = [
    """DO $locksmith$
BEGIN
    BEGIN
        CREATE ROLE locksmith_audit_writer;
    EXCEPTION WHEN duplicate_object THEN
        NULL;
    END;
    -- A role of that name made by someone else gets no attribute that would widen what the triggers can do.
    ALTER ROLE locksmith_audit_writer NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOLOGIN NOREPLICATION
        NOBYPASSRLS CONNECTION LIMIT 0 PASSWORD NULL;
    -- A role that is not a superuser may give a function away only to a role it belongs to.
    IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = current_user) THEN
        EXECUTE pg_catalog.format('GRANT locksmith_audit_writer TO %I', current_user);
    END IF;
END
$locksmith$""",
    # USAGE on the schema and INSERT on the log are the grant reconciliation's (_audit._grant_steps).
    "GRANT USAGE ON SEQUENCE {s}.log_id_seq TO locksmith_audit_writer",
    "ALTER FUNCTION {s}.log_row() OWNER TO locksmith_audit_writer",
    "ALTER FUNCTION {s}.log_statement() OWNER TO locksmith_audit_writer",
    # The owner of a function may drop it (CASCADE takes every audit trigger with it) or alter it; code that
    # runs as WRITER_ROLE never needs to, so this database refuses such DDL from it.
    """CREATE FUNCTION {s}.refuse_writer_ddl() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = '' AS $locksmith$
BEGIN
    IF current_user = 'locksmith_audit_writer' THEN
        RAISE EXCEPTION 'locksmith_audit_writer may not run %', TG_TAG
            USING HINT = 'code that runs inside the audit triggers cannot change the schema';
    END IF;
END
$locksmith$""",
    "REVOKE ALL ON FUNCTION {s}.refuse_writer_ddl() FROM PUBLIC",
    """DO $locksmith$
BEGIN
    -- Only a superuser may create event triggers; without one the guard is missing (docs/audit.md).
    IF (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = current_user)
       AND NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger WHERE evtname = 'locksmith_audit_writer_ddl') THEN
        EXECUTE pg_catalog.format('CREATE EVENT TRIGGER locksmith_audit_writer_ddl ON ddl_command_start '
                                  'EXECUTE FUNCTION %I.refuse_writer_ddl()', {s_lit}::text);
    END IF;
END
$locksmith$""",
]

# Version 4: the statement text of a TRUNCATE under row capture can be left out. current_query() is the client's
# whole query string, so "UPDATE users SET password_hash = '...'; TRUNCATE users" put an excluded column's value
# into the log. A second argument 'false' (given when exclude_columns is set) stores no text; triggers with one
# argument keep theirs. Statement triggers only: the per-row path is unchanged.
_V4 = [
    """CREATE OR REPLACE FUNCTION {s}.log_statement() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $locksmith$
DECLARE
    role_setting text := pg_catalog.current_setting('role');
BEGIN
    INSERT INTO {s}.log (transaction_id, operation, capture, schema_name, table_name, query,
                         db_role, session_role, application_name, client_addr, app_user_id)
    VALUES (pg_catalog.txid_current(), TG_OP, 'statement', TG_TABLE_SCHEMA, TG_TABLE_NAME,
            CASE WHEN TG_NARGS > 1 AND TG_ARGV[1] = 'false' THEN NULL ELSE pg_catalog.current_query() END,
            CASE WHEN role_setting = 'none' THEN session_user ELSE role_setting END, session_user,
            pg_catalog.current_setting('application_name'), pg_catalog.inet_client_addr(),
            NULLIF(pg_catalog.current_setting(TG_ARGV[0], true), ''));
    RETURN NULL;
END
$locksmith$""",
]

# Version 5: floats are compared and logged at full precision whatever the session asks for. to_jsonb() prints
# real and double precision with the caller's extra_float_digits, which any role may lower for its own session:
# 1.2 and 1.3 both printed as 1, so diff_only saw no change and the log held rounded values. log_row now sets the
# default (1, the shortest text that reads back exactly) for its own run: one more setting in the save and restore
# its search_path already costs. The WHEN clause that keeps updates of excluded columns only out of the log ran
# in the caller's session too; it now calls row_changed, which sets the same. row_changed takes the rows whole, so
# the clause still names no column (DROP COLUMN is never blocked by it), and runs as the caller: it reads only
# the two rows it is given.
_V5 = [
    "ALTER FUNCTION {s}.log_row() SET extra_float_digits = 1",
    """CREATE FUNCTION {s}.row_changed(old_row anyelement, new_row anyelement, excluded text[]) RETURNS boolean
LANGUAGE sql STABLE SET search_path = '' SET extra_float_digits = 1 AS $locksmith$
SELECT (pg_catalog.to_jsonb(old_row) OPERATOR(pg_catalog.-) excluded)
       IS DISTINCT FROM (pg_catalog.to_jsonb(new_row) OPERATOR(pg_catalog.-) excluded)
$locksmith$""",
]

# Version 6: maintain() records its own run. The retention metric published the time Ansible ran, so a timer that
# stopped, a maintain() that failed or a pg_cron job that was removed showed nothing. The record is written in
# maintain()'s transaction: a run that fails leaves the previous record. retention_status() is what the metrics
# writers publish (the module and the timer's locksmith-audit-metrics), so both read one definition.
_V6 = [
    # One row (maintain() writes key true only): the newest run that completed. Only the owner reads or writes it.
    """CREATE TABLE {s}.retention_run (
    singleton boolean PRIMARY KEY DEFAULT true,
    ran_at timestamptz NOT NULL,
    retention_days integer NOT NULL,
    months_ahead integer NOT NULL,
    dropped_partitions text[] NOT NULL
)""",
    """CREATE OR REPLACE FUNCTION {s}.maintain(retention_days integer, months_ahead integer,
                            as_of timestamptz DEFAULT pg_catalog.clock_timestamp())
RETURNS TABLE (action text, partition_name text, range_from timestamptz, range_to timestamptz)
LANGUAGE plpgsql SET search_path = '' AS $locksmith$
DECLARE
    schema_name constant text := {s_lit};
    dropped text[] := '{{}}';
    step record;
BEGIN
    FOR step IN SELECT * FROM {s}.partition_plan(months_ahead, retention_days, as_of) LOOP
        PERFORM {s}.create_partition((step.range_from AT TIME ZONE 'UTC')::date);
        IF step.action = 'drop' THEN
            EXECUTE pg_catalog.format('DROP TABLE %I.%I', schema_name, step.partition_name);
            dropped := dropped OPERATOR(pg_catalog.||) step.partition_name;
        END IF;
        action := step.action; partition_name := step.partition_name;
        range_from := step.range_from; range_to := step.range_to;
        RETURN NEXT;
    END LOOP;
    IF pg_catalog.cardinality(dropped) > 0 THEN
        INSERT INTO {s}.log (transaction_id, operation, capture, schema_name, table_name, new_data,
                             application_name, client_addr)
        VALUES (pg_catalog.txid_current(), 'RETENTION', 'system', schema_name, 'log',
                pg_catalog.jsonb_build_object('dropped_partitions', dropped, 'retention_days', retention_days,
                                              'cutoff', as_of - pg_catalog.make_interval(days => retention_days)),
                pg_catalog.current_setting('application_name'), pg_catalog.inet_client_addr());
    END IF;
    -- The wall clock at the end, not as_of (a test's clock): when the retention really ran.
    INSERT INTO {s}.retention_run (singleton, ran_at, retention_days, months_ahead, dropped_partitions)
    VALUES (true, pg_catalog.clock_timestamp(), retention_days, months_ahead, dropped)
    ON CONFLICT (singleton) DO UPDATE
        SET ran_at = EXCLUDED.ran_at, retention_days = EXCLUDED.retention_days,
            months_ahead = EXCLUDED.months_ahead, dropped_partitions = EXCLUDED.dropped_partitions;
END
$locksmith$""",
    # Newest completed run (null before the first) and the log's size, all partitions, as the metrics publish them.
    """CREATE FUNCTION {s}.retention_status()
RETURNS TABLE (last_run_at timestamptz, log_size_bytes bigint)
LANGUAGE sql STABLE SET search_path = '' AS $locksmith$
SELECT (SELECT r.ran_at FROM {s}.retention_run AS r),
       (SELECT COALESCE(pg_catalog.sum(pg_catalog.pg_total_relation_size(i.inhrelid)), 0)::bigint
          FROM pg_catalog.pg_inherits AS i
         WHERE i.inhparent = pg_catalog.to_regclass(pg_catalog.format('%I.log', {s_lit}::text)))
$locksmith$""",
    "REVOKE ALL ON TABLE {s}.retention_run FROM PUBLIC",
    "REVOKE ALL ON FUNCTION {s}.retention_status() FROM PUBLIC",
]

# (version, description, statements). Append only.
MIGRATIONS = [
    (1, "audit log partitioned by month, row and statement triggers, retention", _V1),
    (2, "cheaper row trigger: no CHECK constraints on the log, lighter diff_only", _V2),
    (3, "trigger functions run as locksmith_audit_writer, which may only insert into the log", _V3),
    (4, "a TRUNCATE of a table with excluded columns logs no statement text", _V4),
    (5, "floats compared and logged at full precision whatever the session's extra_float_digits", _V5),
    (6, "maintain() records its newest completed run; retention_status() for the metrics", _V6),
]
LATEST_VERSION = MIGRATIONS[-1][0]
