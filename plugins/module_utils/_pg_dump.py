# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""PostgreSQL client programs for backups: find them, read their version, run them as streams.

The connection goes to the programs through libpq environment variables, so no password is ever on
a command line; arguments are lists, never a shell.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess  # nosec B404 - runs pg_dump/pg_restore with argv lists, never a shell
import threading

from ansible_collections.locksmith.ops.plugins.module_utils import _postgres
from ansible_collections.locksmith.ops.plugins.module_utils._errors import LocksmithError

READ_SIZE = 1024 * 1024
# Up to this many MiB of dump output wait in memory while the previous chunk is compressed.
QUEUE_CHUNKS = 16
# DETAIL/HINT/CONTEXT lines (the server's, or pg_dump's own "pg_dump: detail:") go with the message above them.
_CONTINUATION = re.compile(r"^(?:\S+: )?(?:detail|hint|context):", re.IGNORECASE)


class PgToolError(LocksmithError):
    """A PostgreSQL client program is missing, or failed."""


def find_tool(name, pg_bin_dir):
    """Path of a PostgreSQL client program, from pg_bin_dir or PATH."""
    if pg_bin_dir:
        path = os.path.join(pg_bin_dir, name)
        if not os.access(path, os.X_OK):
            raise PgToolError(
                "%s not found in pg_bin_dir '%s'; point pg_bin_dir at the PostgreSQL bin directory "
                "(e.g. /usr/lib/postgresql/16/bin)" % (name, pg_bin_dir),
                option="pg_bin_dir",
            )
        return path
    path = shutil.which(name)
    if path is None:
        raise PgToolError(
            "%s not found on PATH; install the PostgreSQL client (postgresql-client-NN) or set pg_bin_dir" % name,
            option="pg_bin_dir",
        )
    return path


def tool_version(path):
    """('15.14', 15) from `<tool> --version`."""
    out = subprocess.run(  # noqa: S603 # nosec B603
        [path, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    match = re.search(r"\(PostgreSQL\)\s+(\d+)(\.\d+)?", out)
    if not match:
        raise PgToolError("cannot read the version of %s (%r); is it a PostgreSQL client program?" % (path, out))
    return match.group(1) + (match.group(2) or ""), int(match.group(1))


def dump_env(params, dbname):
    """libpq environment for pg_dump: the password never appears on a command line.

    What the module's options set overrides the environment; what they leave unset keeps the PG* variable
    the module's own connection also honours (e.g. PGPASSWORD injected by an AWX credential), so pg_dump
    reaches the same server as the same user.
    """
    env = dict(os.environ)
    kwargs = _postgres.connect_kwargs(params, dbname)
    mapping = {
        "host": "PGHOST",
        "port": "PGPORT",
        "user": "PGUSER",
        "password": "PGPASSWORD",  # nosec B105 - the variable name, not a password
        "dbname": "PGDATABASE",
        "sslmode": "PGSSLMODE",
        "sslrootcert": "PGSSLROOTCERT",
        "connect_timeout": "PGCONNECT_TIMEOUT",
        "application_name": "PGAPPNAME",
    }
    for key, var in mapping.items():
        if kwargs.get(key) is not None:
            env[var] = str(kwargs[key])
    return env


def _set_pipe_size(handle):
    try:
        import fcntl

        fcntl.fcntl(handle.fileno(), 1031, READ_SIZE)  # F_SETPIPE_SZ: fewer, larger reads
    except (ImportError, OSError):
        pass


def stream_command(argv, env, sink, describe):
    """Run ``argv``; pass stdout in chunks to ``sink(data)`` (returns False to stop); fail on errors.

    A reader thread drains the pipe into a bounded queue, so the producer keeps dumping while this
    thread compresses and writes (as `pg_dump | zstd` overlaps the two processes).
    """
    # argv lists only, never a shell: identifiers are validated and passed as single arguments.
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)  # noqa: S603 # nosec B603
    stderr = []
    chunks = queue.Queue(maxsize=QUEUE_CHUNKS)
    stop = threading.Event()

    def read_stdout():
        _set_pipe_size(proc.stdout)
        while not stop.is_set():
            data = proc.stdout.read(READ_SIZE)
            chunks.put(data)
            if not data:
                return

    threads = [
        threading.Thread(target=lambda: stderr.append(proc.stderr.read()), daemon=True),
        threading.Thread(target=read_stdout, daemon=True),
    ]
    for thread in threads:
        thread.start()
    stopped = False
    drained = False
    try:
        while True:
            data = chunks.get()
            if not data:
                drained = True
                break
            if sink(data) is False:
                stopped = True
                break
    finally:
        if not drained:
            # Every destination failed, or a stage raised: stop pg_dump and the reader.
            stop.set()
            proc.kill()
            while threads[1].is_alive():
                try:
                    chunks.get(timeout=0.1)
                except queue.Empty:
                    pass
        rc = proc.wait()
        for thread in threads:
            thread.join()
        proc.stdout.close()
        proc.stderr.close()
    text = b"".join(stderr).decode("utf-8", "replace").strip()
    if stopped:
        return []
    warnings, errors = split_messages(line for line in text.splitlines() if line.strip())
    if rc != 0 or errors:
        raise PgToolError(
            "%s failed (exit %d): %s" % (describe, rc, explain_dump_error(" ".join(errors) or "no message")),
            rc=rc,
            stderr="\n".join(errors[-20:]),  # Ansible requires stderr to be a string
        )
    return warnings


def split_messages(lines):
    """(warnings, errors) among stderr lines; a warning's DETAIL and HINT (a server WARNING at connect, such as
    a collation version mismatch) are part of the warning, not errors."""
    warnings, errors = [], []
    current = errors
    for line in lines:
        if not _CONTINUATION.match(line):
            current = warnings if "warning:" in line.lower() else errors
        current.append(line)
    return warnings, errors


def explain_dump_error(text):
    lowered = text.lower()
    if "no matching" in lowered:
        return text + "; check schemas/tables: every name given must exist"
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return text + "; check login_user and login_password"
    if "permission denied" in lowered:
        return text + "; grant login_user read access to every dumped object, or use a role with pg_read_all_data"
    if "server version mismatch" in lowered or "aborting because of server version" in lowered:
        return text + "; set pg_bin_dir to a pg_dump at least as new as the server"
    return text
