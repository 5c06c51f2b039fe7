# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""Where rotated secrets are used: PostgreSQL roles, HMAC keys, and values your own handler applies.

A target applies a staged version, tests it with a real login or check, restores the current one and
revokes the previous one. Each action is idempotent and none returns a secret: the statements kept
for executed_queries show ``<secret vN>`` markers, and the PostgreSQL password is sent only as a
SCRAM-SHA-256 verifier computed here, so the plaintext never reaches the server or its logs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import subprocess  # nosec B404

from ansible.module_utils.urls import mask_url

from ansible_collections.locksmith.ops.plugins.module_utils import _postgres, _urls
from ansible_collections.locksmith.ops.plugins.module_utils._errors import LocksmithError
from ansible_collections.locksmith.ops.plugins.module_utils._rotation import CredentialRejected, TargetUnavailable

SCRAM_ITERATIONS = 4096


def scram_sha256_verifier(password, salt=None, iterations=SCRAM_ITERATIONS):
    """PostgreSQL's SCRAM-SHA-256 verifier for ``password``, so the plaintext never reaches the server.

    Generated passwords are printable ASCII, for which SASLprep is the identity.
    """
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(data):
        return base64.b64encode(data).decode("ascii")

    return "SCRAM-SHA-256$%d:%s$%s:%s" % (iterations, b64(salt), b64(stored_key), b64(server_key))


def run_hook(argv, data, environ_update, timeout=120):
    """Run a user's hook (argv list, no shell) with ``data`` on stdin; -> (rc, stdout, stderr).

    A command that exits without reading its input is fine (the broken pipe is ignored).
    """
    # The argv list comes from the task itself and never passes through a shell.
    try:
        proc = subprocess.run(  # noqa: S603 # nosec B603
            argv,
            input=(data + "\n").encode("utf-8"),
            capture_output=True,
            env=dict(os.environ, **environ_update),
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        raise TargetUnavailable("%r did not finish in %d s; make it finish sooner" % (argv[0], timeout)) from err
    except (OSError, ValueError) as err:  # ValueError: a NUL byte in argv
        cause = err.strerror if isinstance(err, OSError) and err.strerror else "a NUL byte in it"
        raise TargetUnavailable(
            "%r could not run (%s); its first item must be a program on this host (a full path, or a name on PATH)"
            % (argv[0], cause)
        ) from err
    return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")


class Target:
    """Where a secret is used. apply/test/restore/revoke are idempotent; none of them returns a value."""

    name = ""
    field = "value"
    grace_blocks = False  # True when the previous version stays in use until revoked

    def __init__(self, params, runner=None, fetch_url=None):
        self.params = params
        self.runner = runner or run_hook
        self.fetch_url = fetch_url
        self.executed_queries = []

    def validate(self):
        """Options only, no I/O."""
        url = self.params.get("test_url")
        problem = _urls.http_url_problem(url) if url else None
        if problem:
            raise LocksmithError("test_url %r %s; fix test_url (nothing was staged)" % (_urls.redact_url(url), problem))
        for option in ("apply_command", "test_command"):
            argv = self.params.get(option) or []
            if any("\x00" in str(arg) for arg in argv) or (argv and not str(argv[0]).strip()):
                raise LocksmithError(
                    "%s holds a NUL byte or an empty program; give an argv list such as [/usr/local/bin/reload-app, "
                    "--quiet] (nothing was staged)" % option
                )

    def check(self, state):
        """Read-only checks before planning (roles exist, ...)."""

    def new_value(self, state, generated):
        return {self.field: generated}

    def apply(self, version, state):
        self._hook("apply_command", version)

    def test(self, version):
        self._hook("test_command", version)
        if self.params.get("test_url"):
            self._check_url(version)

    def applies(self):
        """Whether apply changes the target itself (so a discarded pending value could be lost there)."""
        return bool(self.params.get("apply_command"))

    def usable(self, version):
        """Whether ``version`` holds this target's field; an adopted or hand-made one may not, and is never applied."""
        return version is not None and isinstance(version.value.get(self.field), str)

    def can_restore(self, state):
        """Whether restore would set something back on the target (what a rollback needs where apply changed it)."""
        return self.usable(state.current) and bool(self.params.get("apply_command"))

    def restore(self, state):
        """Make the current version the one the target uses again; True if something was done."""
        if self.can_restore(state):
            self._hook("apply_command", state.current)
            return True
        return False

    def revoke(self, previous, current):
        """Stop ``previous`` from working on the target."""

    def close(self):
        """Release connections."""

    def _hook(self, option, version):
        argv = self.params.get(option)
        if not argv:
            return
        try:
            rc, _out, err = self.runner(
                argv,
                data=version.value[self.field],
                environ_update={"LOCKSMITH_SECRET_VERSION": version.version_id},
            )
        except TargetUnavailable as failure:
            raise type(failure)("%s %s" % (option, failure.msg), **failure.details) from failure
        if rc != 0:
            # stderr is shown after Ansible masks registered values; stdout is never shown.
            kind = CredentialRejected if option == "test_command" else TargetUnavailable
            raise kind("%s %s exited %d for %s: %s" % (option, argv[0], rc, version.marker(), err.strip()[-300:]))

    def _check_url(self, version):
        url = self.params["test_url"]
        _response, info = self.fetch_url(url, headers={"Authorization": "Bearer %s" % version.value[self.field]})
        status = info.get("status", -1)
        if info.get("url") not in (None, mask_url(url)):
            # The answer came from elsewhere (a login page?), without the value: it judges nothing.
            raise TargetUnavailable(
                "test_url %s redirected to %s, which was not sent %s; set test_url to the address that answers "
                "itself" % (_urls.redact_url(url), _urls.redact_url(info["url"]), version.marker())
            )
        if 200 <= status < 300:
            return
        if status in (401, 403):
            raise CredentialRejected("test_url %s refused %s (HTTP %d)" % (url, version.marker(), status))
        raise TargetUnavailable("test_url %s answered HTTP %s for %s" % (url, status, version.marker()))


class GenericTarget(Target):
    """A value your own handler applies: through apply_command, or between two runs (stop_after: stage)."""

    name = "generic"


class HmacTarget(Target):
    """A signing key that senders and receivers read from the store; previous stays valid for the grace period."""

    name = "hmac"
    field = "key"
    grace_blocks = True


class _PostgresTarget(Target):
    field = "password"

    def __init__(self, params, runner=None, fetch_url=None):
        super().__init__(params, runner, fetch_url)
        self._conn = None

    @property
    def database(self):
        return self.params["database"]

    def applies(self):
        return True

    def conn(self):
        if self._conn is None:
            try:
                self._conn = _postgres.connect(self.params, self.database, autocommit=True)
            except _postgres.PostgresError as err:
                raise TargetUnavailable(err.msg) from err
        return self._conn

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _query(self, query, params):
        try:
            return _postgres.fetch_all(self.conn(), query, params)
        except _postgres.psycopg2.Error as err:
            raise TargetUnavailable(
                "query on %s failed: %s" % (self.database, str(err).strip().splitlines()[0] if str(err) else err)
            ) from err

    def _owned(self, state, roles):
        """Refuse a secret whose current version is another role's: apply, restore and revoke would touch that role."""
        username = state.current.value.get("username") if state.current is not None else None
        if isinstance(username, str) and username not in roles:
            raise TargetUnavailable(
                "the current version holds the credential of role '%s', which is not one of roles %s; give each "
                "role (or pair) a secret name of its own, or set the roles back" % (username, ", ".join(roles))
            )

    def _roles_exist(self, roles):
        rows = self._query("SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = ANY(%(names)s)", {"names": roles})
        found = {row["rolname"]: row["rolcanlogin"] for row in rows}
        for role in roles:
            if role not in found:
                raise TargetUnavailable(
                    "role '%s' does not exist on %s; create it (LOGIN) first, e.g. with "
                    "community.postgresql.postgresql_user"
                    % (role, _postgres.describe_target(self.params, self.database))
                )
            if not found[role]:
                raise TargetUnavailable("role '%s' cannot log in; ALTER ROLE %s LOGIN first" % (role, role))

    def _set_password(self, role, password, marker):
        statement = _postgres.sql.SQL("ALTER ROLE {} PASSWORD %s").format(_postgres.identifier(role))
        value = scram_sha256_verifier(password) if password is not None else None
        try:
            with self.conn().cursor() as cur:
                cur.execute(statement, (value,))
        except _postgres.psycopg2.Error as err:
            raise TargetUnavailable(
                "ALTER ROLE %s failed: %s" % (role, str(err).strip().splitlines()[0] if str(err).strip() else repr(err))
            ) from err
        shown = _postgres.rendered(
            self.conn(), _postgres.sql.SQL("ALTER ROLE {} PASSWORD ").format(_postgres.identifier(role))
        )
        self.executed_queries.append(shown + ("'%s'" % marker if password is not None else "NULL"))

    def _login(self, role, version):
        kwargs = _postgres.connect_kwargs(
            dict(self.params, login_user=role, login_password=version.value[self.field]), self.database
        )
        try:
            conn = _postgres.psycopg2.connect(**kwargs)
        except _postgres.psycopg2.OperationalError as err:
            text = str(err)
            target = _postgres.describe_target(dict(self.params, login_user=role), self.database)
            if "password authentication failed" in text or "no pg_hba.conf entry" in text:
                raise CredentialRejected(
                    "login as %s with %s refused at %s" % (role, version.marker(), target)
                ) from err
            raise TargetUnavailable(_postgres.explain_connect_error(text, target)) from err
        try:
            # pg_hba.conf let this login in without asking for the password (trust, peer): it would pass with any
            # value, so it is no test.
            if not conn.info.used_password:
                raise TargetUnavailable(
                    "the test login as %s at %s was asked for no password (pg_hba.conf trusts it, e.g. a trust or "
                    "peer line for local sockets), so it cannot test %s; set login_host to an address where "
                    "pg_hba.conf asks for scram-sha-256"
                    % (
                        role,
                        _postgres.describe_target(dict(self.params, login_user=role), self.database),
                        version.marker(),
                    )
                )
            with conn.cursor() as cur:
                cur.execute(self.params["test_query"])
        except _postgres.psycopg2.Error as err:
            raise CredentialRejected(
                "test_query as %s with %s failed: %s" % (role, version.marker(), str(err).strip().splitlines()[0])
            ) from err
        finally:
            conn.rollback()
            conn.close()


class PostgresPasswordTarget(_PostgresTarget):
    """One login role whose password is replaced in place (ALTER ROLE ... PASSWORD, SCRAM verifier)."""

    name = "postgresql_password"

    def validate(self):
        super().validate()
        _postgres.validate_identifier(self.params["role"], "role")

    def check(self, state):
        self._roles_exist([self.params["role"]])
        self._owned(state, [self.params["role"]])

    def new_value(self, state, generated):
        return {"username": self.params["role"], self.field: generated}

    def apply(self, version, state):
        self._set_password(self.params["role"], version.value[self.field], version.marker())

    def test(self, version):
        self._login(self.params["role"], version)

    def can_restore(self, state):
        return self.usable(state.current)

    def restore(self, state):
        if not self.can_restore(state):
            return False
        self._set_password(self.params["role"], state.current.value[self.field], state.current.marker())
        return True


class PostgresAlternatingTarget(_PostgresTarget):
    """Two login roles with the same grants: the inactive one gets the new password, then becomes current."""

    name = "postgresql_alternating"
    grace_blocks = True

    def validate(self):
        super().validate()
        roles = self.params["roles"] or []
        if len(roles) != 2 or roles[0] == roles[1]:
            raise LocksmithError("roles must name two different login roles, e.g. [app, app_clone]; got %s" % roles)
        for i, role in enumerate(roles):
            _postgres.validate_identifier(role, "roles[%d]" % i)

    def check(self, state):
        self._roles_exist(list(self.params["roles"]))
        self._owned(state, list(self.params["roles"]))

    def inactive(self, state):
        first, second = self.params["roles"]
        if state.current is not None and state.current.value.get("username") == first:
            return second
        return first

    def new_value(self, state, generated):
        return {"username": self.inactive(state), self.field: generated}

    def apply(self, version, state):
        self._set_password(version.value["username"], version.value[self.field], version.marker())

    def test(self, version):
        self._same_memberships()
        self._login(version.value["username"], version)

    def _same_memberships(self):
        rows = self._query(
            "SELECT m.rolname AS member, g.rolname AS granted FROM pg_auth_members a "
            "JOIN pg_roles m ON m.oid = a.member JOIN pg_roles g ON g.oid = a.roleid "
            "WHERE m.rolname = ANY(%(names)s)",
            {"names": list(self.params["roles"])},
        )
        first, second = self.params["roles"]
        grants = {role: sorted(r["granted"] for r in rows if r["member"] == role) for role in (first, second)}
        if grants[first] != grants[second]:
            raise CredentialRejected(
                "roles '%s' (member of %s) and '%s' (member of %s) must have the same grants: grant both the "
                "same group role" % (first, grants[first] or "nothing", second, grants[second] or "nothing")
            )

    def can_restore(self, state):
        # The pending role is set back to its previous password, or to none: never left on the pending one.
        return True

    def restore(self, state):
        role = state.pending.value["username"]
        previous = (
            state.previous if self.usable(state.previous) and state.previous.value.get("username") == role else None
        )
        self._set_password(
            role, previous.value[self.field] if previous else None, previous.marker() if previous else ""
        )
        return True

    def revoke(self, previous, current):
        role = previous.value.get("username")
        if role and role != current.value.get("username"):
            self._set_password(role, None, "")


TARGETS = {
    "generic": GenericTarget,
    "hmac": HmacTarget,
    "postgresql_alternating": PostgresAlternatingTarget,
    "postgresql_password": PostgresPasswordTarget,
}
