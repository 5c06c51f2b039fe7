# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""Reading the SQL that pg_dumpall --globals-only and pg_restore --create write, as data.

A backup comes from storage, so its SQL is never run as written: each statement of a known shape is
parsed into names and values, and rebuilt with psycopg2.sql (identifiers quoted, values as literals).
Statements of any other shape are reported as skipped, never executed.
"""

from __future__ import annotations

import re

from ansible_collections.locksmith.ops.plugins.module_utils._errors import LocksmithError

_TOKEN = re.compile(
    r"""\s*(?:(?P<ident>"(?:[^"]|"")*")|(?P<string>'(?:[^']|'')*')|(?P<word>[A-Za-z_][A-Za-z0-9_$]*)"""
    r"""|(?P<number>-?\d+(?:\.\d+)?)|(?P<punct>[(),;=.])|(?P<other>\S))"""
)
ROLE_FLAGS = {
    flag
    for base in ("SUPERUSER", "INHERIT", "CREATEROLE", "CREATEDB", "LOGIN", "REPLICATION", "BYPASSRLS")
    for flag in (base, "NO" + base)
}
DATABASE_PRIVILEGES = {"ALL", "CONNECT", "TEMPORARY", "TEMP", "CREATE"}
DATABASE_OPTIONS = {"ENCODING", "LOCALE_PROVIDER", "LOCALE", "LC_COLLATE", "LC_CTYPE", "ICU_LOCALE"}
MAX_NAME_BYTES = 63
# No name may hold control characters; a manifest's database names (strict) also no quotes, ';' or backslash,
# the characters an injection needs, which pg_dump's own names for real databases do not have.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UNSAFE_NAME = re.compile(r"""['";\\\x00-\x1f\x7f]""")


class GlobalsError(LocksmithError):
    """A name or statement read from a backup cannot be used."""


def safe_name(value, what, strict=False):
    """A role, database or tablespace name from a backup: 1 to 63 bytes, no controls (strict: no quotes, ';')."""
    if not isinstance(value, str) or not value or len(value.encode("utf-8")) > MAX_NAME_BYTES:
        raise GlobalsError("%s %r from the backup is not a valid PostgreSQL name (1 to 63 bytes)" % (what, value))
    if (_UNSAFE_NAME if strict else _CONTROL).search(value):
        raise GlobalsError(
            "%s %r from the backup holds %s; the backup or its manifest was altered: restore another "
            "backup (backup_id)"
            % (what, value, "quotes, ';', backslashes or control characters" if strict else "control characters"),
            option="backup_id",
        )
    return value


class Tok:
    """One token: kind is ident, string, word, number, punct or other."""

    __slots__ = ("kind", "value")

    def __init__(self, kind, value):
        self.kind = kind
        self.value = value

    def is_word(self, *words):
        """A bare word equal to one of ``words`` (upper case), case-insensitively."""
        return self.kind == "word" and self.value.upper() in words

    def __repr__(self):
        return "%s:%s" % (self.kind, self.value)


def tokenize(text):
    """Tokens of SQL text; quoted identifiers and strings are unescaped."""
    tokens = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        raw = match.group(kind)
        if kind == "ident":
            tokens.append(Tok("ident", raw[1:-1].replace('""', '"')))
        elif kind == "string":
            tokens.append(Tok("string", raw[1:-1].replace("''", "'")))
        else:
            tokens.append(Tok(kind, raw))
    return tokens


def statements(text):
    """Token lists of each statement; comments and psql meta-commands (\\connect, \\restrict) dropped."""
    kept = [line for line in text.splitlines() if not line.lstrip().startswith(("--", "\\"))]
    current, out = [], []
    for token in tokenize("\n".join(kept)):
        if token.kind == "punct" and token.value == ";":
            if current:
                out.append(current)
            current = []
        else:
            current.append(token)
    if current:
        out.append(current)
    return out


def _name(token):
    """A name token (quoted or bare identifier), else None; bare words fold to lower case as in PostgreSQL."""
    if token.kind == "ident":
        return token.value
    if token.kind == "word":
        return token.value.lower()
    return None


def _shown(tokens):
    """A skipped statement as reported: the string after PASSWORD (a hash) redacted, at most 120 characters."""
    values = [
        "'<redacted>'" if index and t.kind == "string" and tokens[index - 1].is_word("PASSWORD") else t.value
        for index, t in enumerate(tokens)
    ]
    text = " ".join(values)
    return text if len(text) <= 120 else text[:117] + "..."


class _Reader:
    """A cursor over one statement's tokens; every miss raises ValueError (the statement is skipped)."""

    def __init__(self, tokens):
        self.tokens = tokens
        self.pos = 0

    def more(self):
        return self.pos < len(self.tokens)

    def peek(self, *words):
        return self.more() and self.tokens[self.pos].is_word(*words)

    def word(self, *words):
        if not self.peek(*words):
            raise ValueError(words)
        self.pos += 1
        return self.tokens[self.pos - 1].value.upper()

    def name(self):
        value = _name(self.tokens[self.pos]) if self.more() else None
        if value is None:
            raise ValueError("name")
        self.pos += 1
        return value

    def take(self, *kinds):
        if not self.more() or self.tokens[self.pos].kind not in kinds:
            raise ValueError(kinds)
        self.pos += 1
        return self.tokens[self.pos - 1].value

    def at_punct(self, value):
        return self.more() and self.tokens[self.pos].kind == "punct" and self.tokens[self.pos].value == value

    def punct(self, value):
        if not self.at_punct(value):
            raise ValueError(value)
        self.pos += 1

    def done(self):
        if self.more():
            raise ValueError("trailing")

    def setting(self):
        """`<param> TO|= value[, value...]` of ALTER ROLE/DATABASE ... SET: (param parts, values)."""
        parts = [self.name()]
        while self.more() and self.tokens[self.pos].kind == "punct" and self.tokens[self.pos].value == ".":
            self.pos += 1
            parts.append(self.name())
        if self.peek("TO"):
            self.pos += 1
        else:
            self.punct("=")
        values = [self.take("string", "number", "word")]
        while self.more():
            self.punct(",")
            values.append(self.take("string", "number", "word"))
        return parts, values


# ---- pg_dumpall --globals-only ------------------------------------------------------------------
def parse_globals(text):
    """{'roles': {name: {...}}, 'memberships': [...], 'tablespaces': {...}, 'skipped': [statement, ...]}.

    Each role: {'flags': [...], 'connection_limit', 'valid_until', 'password' (or None), 'settings', 'comment'}.
    Each membership: {'role', 'member', 'admin', 'inherit', 'set'}; inherit and set None when not dumped (before 16).
    """
    parsed = {"roles": {}, "memberships": [], "tablespaces": {}, "skipped": []}
    for tokens in statements(text):
        if tokens[0].is_word("SET") or (tokens[0].is_word("SELECT") and len(tokens) > 3):
            continue  # session settings of the dump script itself
        try:
            _globals_statement(_Reader(tokens), parsed)
        except (ValueError, IndexError):
            parsed["skipped"].append(_shown(tokens))
    return parsed


def _role(parsed, name):
    role = {"flags": [], "connection_limit": None, "valid_until": None, "settings": []}
    role["password"] = None  # the dumped hash, when there is one
    return parsed["roles"].setdefault(safe_name(name, "role"), role)


def _globals_statement(r, parsed):
    if r.peek("CREATE"):
        r.word("CREATE")
        if r.peek("ROLE"):
            r.word("ROLE")
            name = r.name()
            r.done()
            _role(parsed, name)
            return
        r.word("TABLESPACE")
        name = safe_name(r.name(), "tablespace")
        r.word("OWNER")
        owner = safe_name(r.name(), "role")
        r.word("LOCATION")
        location = r.take("string")
        r.done()
        parsed["tablespaces"][name] = {"owner": owner, "location": location}
        return
    if r.peek("ALTER"):
        r.word("ALTER")
        r.word("ROLE")
        role = _role(parsed, r.name())
        if r.peek("SET"):
            r.word("SET")
            role["settings"].append(r.setting())
            return
        r.word("WITH")
        while r.more():
            word = r.word(*ROLE_FLAGS, "CONNECTION", "VALID", "PASSWORD")
            if word == "CONNECTION":
                r.word("LIMIT")
                role["connection_limit"] = int(r.take("number"))
            elif word == "VALID":
                r.word("UNTIL")
                role["valid_until"] = r.take("string")
            elif word == "PASSWORD":
                role["password"] = r.take("string")
            else:
                role["flags"].append(word)
        return
    if r.peek("COMMENT"):
        r.word("COMMENT")
        r.word("ON")
        r.word("ROLE")
        role = _role(parsed, r.name())
        r.word("IS")
        role["comment"] = r.take("string")
        r.done()
        return
    r.word("GRANT")
    group = safe_name(r.name(), "role")
    r.word("TO")
    member = safe_name(r.name(), "role")
    # inherit and set stay None unless the dump has them (PostgreSQL 16+ writes INHERIT, and SET FALSE).
    item = {"role": group, "member": member, "admin": False, "inherit": None, "set": None}
    if r.peek("WITH"):
        r.word("WITH")
        _membership_option(r, item)
        while r.at_punct(","):
            r.punct(",")
            _membership_option(r, item)
    if r.peek("GRANTED"):
        r.word("GRANTED")
        r.word("BY")
        r.name()  # the grantor may not exist here; the restoring role grants instead
    r.done()
    parsed["memberships"].append(item)


def _membership_option(r, item):
    """One `ADMIN|INHERIT|SET OPTION|TRUE|FALSE` of a GRANT role TO member (OPTION means TRUE)."""
    key = r.word("ADMIN", "INHERIT", "SET").lower()
    item[key] = r.word("OPTION", "TRUE", "FALSE") != "FALSE"


# ---- the DATABASE entries of a pg_dump archive (pg_restore --create) ---------------------------
def parse_database(text):
    """{'name', 'owner', 'options': {ENCODING: ..., LOCALE: ...}, 'settings', 'role_settings', 'grants', 'skipped'}."""
    info = {
        "name": None,
        "owner": None,
        "options": {},
        "settings": [],
        "role_settings": [],
        "grants": [],
        "skipped": [],
    }
    for tokens in statements(text):
        if tokens[0].is_word("SET") or tokens[0].is_word("SELECT"):
            continue
        try:
            _database_statement(_Reader(tokens), info)
        except (ValueError, IndexError):
            info["skipped"].append(_shown(tokens))
    return info


def _database_statement(r, info):
    if r.peek("CREATE"):
        r.word("CREATE")
        r.word("DATABASE")
        info["name"] = safe_name(r.name(), "database")
        r.word("WITH")
        while r.more():
            key = r.take("word").upper()
            r.punct("=")
            value = r.take("string", "word", "ident")
            if key in DATABASE_OPTIONS:
                info["options"][key] = value
        return
    if r.peek("ALTER"):
        r.word("ALTER")
        if r.peek("ROLE"):
            r.word("ROLE")
            role = safe_name(r.name(), "role")
            r.word("IN")
            r.word("DATABASE")
            r.name()
            r.word("SET")
            info["role_settings"].append((role, *r.setting()))
            return
        r.word("DATABASE")
        r.name()
        if r.peek("OWNER"):
            r.word("OWNER")
            r.word("TO")
            info["owner"] = safe_name(r.name(), "role")
            r.done()
            return
        r.word("SET")
        info["settings"].append(r.setting())
        return
    verb = r.word("GRANT", "REVOKE")
    privileges = [r.word(*DATABASE_PRIVILEGES)]
    while not r.peek("ON"):
        if r.peek("PRIVILEGES"):
            r.word("PRIVILEGES")
            continue
        r.punct(",")
        privileges.append(r.word(*DATABASE_PRIVILEGES))
    r.word("ON")
    r.word("DATABASE")
    r.name()
    r.word("TO" if verb == "GRANT" else "FROM")
    grantee = "PUBLIC" if r.peek("PUBLIC") else None
    if grantee:
        r.word("PUBLIC")
    else:
        grantee = safe_name(r.name(), "role")
    option = False
    if verb == "GRANT" and r.peek("WITH"):
        r.word("WITH")
        r.word("GRANT")
        r.word("OPTION")
        option = True
    r.done()
    info["grants"].append({"verb": verb, "privileges": privileges, "grantee": grantee, "grant_option": option})


# ---- rebuilding statements with psycopg2.sql ----------------------------------------------------
def _sql():
    from psycopg2 import sql

    return sql


def setting_sql(parts, values):
    """`<param> TO 'v1', 'v2'` with the name as identifiers and the values as literals."""
    sql = _sql()
    return sql.SQL("{} TO {}").format(
        sql.SQL(".").join(sql.Identifier(p) for p in parts), sql.SQL(", ").join(sql.Literal(v) for v in values)
    )


def create_role_sql(name, role):
    """(statement, shown): CREATE ROLE with the dump's attributes; ``shown`` has the password redacted."""
    sql = _sql()

    def build(password):
        parts = [sql.SQL(flag) for flag in role["flags"] if flag in ROLE_FLAGS]
        if role.get("connection_limit") is not None:
            parts.append(sql.SQL("CONNECTION LIMIT {}").format(sql.Literal(int(role["connection_limit"]))))
        if role.get("valid_until") is not None:
            parts.append(sql.SQL("VALID UNTIL {}").format(sql.Literal(role["valid_until"])))
        if password is not None:
            parts.append(sql.SQL("PASSWORD {}").format(password))
        statement = sql.SQL("CREATE ROLE {}").format(sql.Identifier(name))
        if parts:
            statement = sql.SQL("{} WITH {}").format(statement, sql.SQL(" ").join(parts))
        return statement

    password = role.get("password")
    statement = build(sql.Literal(password) if password is not None else None)
    shown = build(sql.SQL("'<redacted>'")) if password is not None else statement
    return statement, shown


def role_setting_sql(name, parts, values, database=None):
    """ALTER ROLE ... [IN DATABASE ...] SET of one dumped setting."""
    sql = _sql()
    if database is None:
        return sql.SQL("ALTER ROLE {} SET {}").format(sql.Identifier(name), setting_sql(parts, values))
    return sql.SQL("ALTER ROLE {} IN DATABASE {} SET {}").format(
        sql.Identifier(name), sql.Identifier(database), setting_sql(parts, values)
    )


def comment_role_sql(name, comment):
    """COMMENT ON ROLE with the dumped text as a literal."""
    sql = _sql()
    return sql.SQL("COMMENT ON ROLE {} IS {}").format(sql.Identifier(name), sql.Literal(comment))


def membership_sql(item, grant_options=True):
    """GRANT role TO member [WITH ADMIN OPTION, INHERIT x, SET x]; the restoring role is the grantor.

    INHERIT and SET are written when the dump has them and ``grant_options`` (a server of 16 or later takes them).
    """
    sql = _sql()
    options = [sql.SQL("ADMIN OPTION")] if item.get("admin") else []
    for key in ("inherit", "set") if grant_options else ():
        if item.get(key) is not None:
            options.append(sql.SQL(" ").join([sql.SQL(key.upper()), sql.SQL("TRUE" if item[key] else "FALSE")]))
    statement = sql.SQL("GRANT {} TO {}").format(sql.Identifier(item["role"]), sql.Identifier(item["member"]))
    if options:
        statement = sql.SQL("{} WITH {}").format(statement, sql.SQL(", ").join(options))
    return statement


def create_tablespace_sql(name, tablespace):
    """CREATE TABLESPACE at the dumped location; the directory must exist, empty, owned by postgres."""
    sql = _sql()
    return sql.SQL("CREATE TABLESPACE {} OWNER {} LOCATION {}").format(
        sql.Identifier(name), sql.Identifier(tablespace["owner"]), sql.Literal(tablespace["location"])
    )


def create_database_sql(name, owner, options):
    """CREATE DATABASE from template0 with the dump's encoding and locale, owned by ``owner``."""
    sql = _sql()
    parts = [sql.SQL("TEMPLATE template0")]
    for key in ("ENCODING", "LOCALE_PROVIDER", "LOCALE", "LC_COLLATE", "LC_CTYPE", "ICU_LOCALE"):
        if key in options:
            value = options[key]
            if key == "LOCALE_PROVIDER":
                if value.lower() not in ("libc", "icu"):
                    raise GlobalsError("database %r: unknown LOCALE_PROVIDER %r in the backup" % (name, value))
                parts.append(sql.SQL("LOCALE_PROVIDER {}").format(sql.SQL(value.lower())))
            else:
                parts.append(sql.SQL(key + " {}").format(sql.Literal(value)))
    if owner:
        parts.append(sql.SQL("OWNER {}").format(sql.Identifier(owner)))
    return sql.SQL("CREATE DATABASE {} WITH {}").format(sql.Identifier(name), sql.SQL(" ").join(parts))


def database_setting_sql(name, parts, values):
    """ALTER DATABASE ... SET of one setting from the archive."""
    sql = _sql()
    return sql.SQL("ALTER DATABASE {} SET {}").format(sql.Identifier(name), setting_sql(parts, values))


def database_grant_sql(name, grant):
    """GRANT or REVOKE database privileges from the archive's ACL entry, on ``name``."""
    sql = _sql()
    privileges = sql.SQL(", ").join(sql.SQL(p) for p in grant["privileges"] if p in DATABASE_PRIVILEGES)
    grantee = sql.SQL("PUBLIC") if grant["grantee"] == "PUBLIC" else sql.Identifier(grant["grantee"])
    if grant["verb"] == "REVOKE":
        return sql.SQL("REVOKE {} ON DATABASE {} FROM {}").format(privileges, sql.Identifier(name), grantee)
    statement = sql.SQL("GRANT {} ON DATABASE {} TO {}").format(privileges, sql.Identifier(name), grantee)
    if grant.get("grant_option"):
        statement = sql.SQL("{} WITH GRANT OPTION").format(statement)
    return statement
