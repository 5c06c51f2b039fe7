"""The rotation protocol's pure parts: policy, planning, markers, failures, SCRAM verifiers, and the fakes' runs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import string

import pytest

from ansible_collections.locksmith.ops.plugins.module_utils import _rotation, _rotation_targets
from ansible_collections.locksmith.ops.plugins.module_utils._errors import LocksmithError
from ansible_collections.locksmith.ops.plugins.module_utils._secrets_backend import SecretState, Version
from ansible_collections.locksmith.ops.plugins.module_utils._secrets_backend.file import FileBackend

NOW = 1_800_000_000.0
DAY = 86400


def params(**over):
    base = dict(
        length=32,
        character_classes=["lower", "upper", "digits"],
        symbols=_rotation.DEFAULT_SYMBOLS,
        min_age_seconds=28 * DAY,
        max_age_seconds=30 * DAY,
        grace_seconds=3600,
        force=False,
        revoke_previous=False,
        on_pending="resume",
        stop_after=None,
    )
    base.update(over)
    return base


def policy(**over):
    return _rotation.Policy(params(**over))


def version(vid, age=0.0, **value):
    return Version(vid, value or {"value": "x%s" % vid}, NOW - age)


def state(current=None, previous=None, pending=None, promoted_age=None):
    promoted = NOW - promoted_age if promoted_age is not None else None
    return SecretState(exists=True, current=current, previous=previous, pending=pending, promoted_at=promoted)


GENERIC = _rotation_targets.GenericTarget({})
HMAC = _rotation_targets.HmacTarget({})


# ---- generation and verifiers ---------------------------------------------------------------
@pytest.mark.parametrize("classes", [["lower"], ["digits", "upper"], ["lower", "upper", "digits", "symbols"]])
def test_generated_secret_has_length_and_every_class(classes):
    pools = {
        "lower": string.ascii_lowercase,
        "upper": string.ascii_uppercase,
        "digits": string.digits,
        "symbols": _rotation.DEFAULT_SYMBOLS,
    }
    for _round in range(20):
        value = _rotation.generate_secret(24, classes)
        assert len(value) == 24
        assert all(any(c in pools[name] for c in value) for name in classes)
        assert all(any(c in pools[name] for name in classes) for c in value)
    assert _rotation.generate_secret(32, ["lower"]) != _rotation.generate_secret(32, ["lower"])


def test_generation_refuses_weak_policies():
    with pytest.raises(LocksmithError, match="length 8 is too short; use at least 16"):
        _rotation.generate_secret(8, ["lower"])
    with pytest.raises(LocksmithError, match="character_classes is empty"):
        _rotation.generate_secret(32, [])
    with pytest.raises(LocksmithError, match="symbols is empty"):
        _rotation.generate_secret(32, ["symbols"], symbols="")
    with pytest.raises(LocksmithError, match="grace_seconds must be 0 or more"):
        policy(grace_seconds=-1).validate()
    # Overdue (the alert) before any run may rotate it: refused.
    with pytest.raises(LocksmithError, match=r"max_age_seconds \(3600\) is below min_age_seconds \(7200\)"):
        policy(min_age_seconds=7200, max_age_seconds=3600).validate()


def test_scram_verifier_matches_rfc_5802_derivation():
    salt = b"0123456789abcdef"
    verifier = _rotation_targets.scram_sha256_verifier("pencil", salt=salt)
    method, rest = verifier.split("$", 1)
    iterations_salt, keys = rest.split("$")
    iterations, salt_b64 = iterations_salt.split(":")
    stored_b64, server_b64 = keys.split(":")
    assert method == "SCRAM-SHA-256" and iterations == "4096" and base64.b64decode(salt_b64) == salt
    salted = hashlib.pbkdf2_hmac("sha256", b"pencil", salt, 4096)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    assert base64.b64decode(stored_b64) == hashlib.sha256(client_key).digest()
    assert base64.b64decode(server_b64) == hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    assert "pencil" not in verifier
    # a fresh random salt each time, so two verifiers of one password differ
    assert _rotation_targets.scram_sha256_verifier("pencil") != _rotation_targets.scram_sha256_verifier("pencil")


# ---- planning -------------------------------------------------------------------------------
def test_plan_first_rotation_and_min_age():
    assert _rotation.plan(SecretState(), policy(), GENERIC, NOW)["steps"] == ["stage", "apply", "test", "promote"]
    young = _rotation.plan(state(current=version("3", age=DAY), promoted_age=DAY), policy(), GENERIC, NOW)
    assert young["due"] is False and young["steps"] == []
    assert "younger than min_age_seconds (2419200); force: true rotates now" in young["reason"]
    old = _rotation.plan(state(current=version("3"), promoted_age=29 * DAY), policy(), GENERIC, NOW)
    assert old["due"] is True and "min_age_seconds is 2419200" in old["reason"]
    forced = _rotation.plan(state(current=version("3"), promoted_age=10), policy(force=True), GENERIC, NOW)
    assert forced["steps"] == ["stage", "apply", "test", "promote"] and forced["reason"] == "force is set"


def test_plan_resumes_a_leftover_pending_version_instead_of_staging():
    leftover = state(current=version("3"), pending=version("4"), promoted_age=10)
    resumed = _rotation.plan(leftover, policy(), GENERIC, NOW)
    assert resumed["resume"] is True and resumed["steps"] == ["apply", "test", "promote"]
    assert "<secret v4> was left by an earlier run" in resumed["reason"]
    rollback = _rotation.plan(leftover, policy(on_pending="rollback"), GENERIC, NOW)
    assert rollback["steps"] == ["rollback"]
    assert _rotation.plan(leftover, policy(stop_after="stage"), GENERIC, NOW)["steps"] == []


def test_plan_refuses_to_resume_a_pending_version_it_did_not_stage():
    # A pending label planted by hand (or left by another tool) would be applied and promoted as if generated here.
    planted = state(current=version("3", key="k3"), pending=version("4", nokey="1"), promoted_age=10)
    with pytest.raises(_rotation.RotationError, match="pending <secret v4> has no 'key' field") as err:
        _rotation.plan(planted, policy(), HMAC, NOW)
    assert err.value.details["failed_step"] == "plan" and "1" not in str(err.value).split("field")[1]
    assert _rotation.plan(planted, policy(on_pending="rollback"), HMAC, NOW)["steps"] == ["rollback"]


def test_plan_refuses_a_rollback_that_would_drop_the_only_credential_in_force():
    # No usable current version to set back, and the target may hold the pending value: dropping it loses it.
    first = state(pending=version("1", username="app", password="p1", value="p1"))
    holders = [
        _rotation_targets.PostgresPasswordTarget({"role": "app"}),
        _rotation_targets.GenericTarget({"apply_command": ["/bin/true"]}),
    ]
    for target in holders:
        with pytest.raises(_rotation.RotationError, match="no usable current version") as err:
            _rotation.plan(first, policy(on_pending="rollback"), target, NOW)
        assert err.value.details["failed_step"] == "plan" and "on_pending: resume" in str(err.value)
        assert "p1" not in str(err.value)
    # A pending version without the target's field (made by hand) was never applied: rolled back, not refused.
    handmade = state(pending=version("1", username="app", token="t1"))
    for target in holders:
        assert _rotation.plan(handmade, policy(on_pending="rollback"), target, NOW)["steps"] == ["rollback"]
    # Nothing outside the store holds it, or the alternating restore clears the pending role: the rollback runs.
    alternating = _rotation_targets.PostgresAlternatingTarget({"roles": ["app", "app_clone"]})
    for target in (GENERIC, alternating):
        assert _rotation.plan(first, policy(on_pending="rollback"), target, NOW)["steps"] == ["rollback"]


def test_plan_grace_blocks_targets_whose_previous_is_in_use():
    live = state(current=version("5"), previous=version("3"), promoted_age=600)
    blocked = _rotation.plan(live, policy(force=True), HMAC, NOW)
    assert blocked["steps"] == [] and "grace period for 3000s" in blocked["reason"]
    assert _rotation.plan(live, policy(force=True), GENERIC, NOW)["steps"]  # generic: previous not in use
    assert _rotation.plan(live, policy(force=True, grace_seconds=0), HMAC, NOW)["steps"]


def test_plan_revoke_waits_for_grace():
    live = state(current=version("5"), previous=version("3"), promoted_age=600)
    assert _rotation.plan(live, policy(revoke_previous=True), GENERIC, NOW)["steps"] == []
    later = state(current=version("5"), previous=version("3"), promoted_age=4000)
    assert _rotation.plan(later, policy(revoke_previous=True), GENERIC, NOW)["steps"] == ["revoke"]
    rotate_now = policy(revoke_previous=True, grace_seconds=0, force=True)
    assert _rotation.plan(later, rotate_now, GENERIC, NOW)["steps"][-1] == "revoke"
    assert _rotation.plan(SecretState(), rotate_now, GENERIC, NOW)["steps"][-1] == "promote"  # nothing to revoke
    stopped = policy(revoke_previous=True, stop_after="promote")
    assert _rotation.plan(later, stopped, GENERIC, NOW)["steps"] == []


def test_predicted_markers_follow_the_steps():
    before = state(current=version("5"), previous=version("3"))
    after = _rotation.predict_markers(before, ["stage", "apply", "test", "promote", "revoke"], "7")
    assert after == {"pending": None, "current": "<secret v7>", "previous": None}
    assert _rotation.predict_markers(before, [], "7") == before.markers()
    rolled = _rotation.predict_markers(state(current=version("5"), pending=version("6")), ["rollback"], "7")
    assert rolled["pending"] is None and rolled["current"] == "<secret v5>"


def test_summary_and_metrics_carry_no_value():
    st = state(current=version("5", value="s3cret-value"), previous=version("3"), promoted_age=100)
    out = _rotation.summary("app/db", "file", GENERIC, st, policy(), NOW)
    assert out["current_version"] == "5" and out["age_seconds"] == 100 and out["overdue"] is False
    assert "s3cret-value" not in repr(out)
    families = {f.name: f for f in _rotation.metric_families("app/db", st, True, 30 * DAY)}
    assert families["locksmith_secret_rotation_last_status"].samples == [({"secret": "app/db"}, 1.0)]
    assert families["locksmith_secret_last_rotation_timestamp_seconds"].samples[0][1] == NOW - 100


# ---- the protocol with a file store and fake targets ----------------------------------------
class FakeTarget(_rotation_targets.Target):
    name = "fake"

    def __init__(self, fail=None, error=_rotation.TargetUnavailable):
        super().__init__({})
        self.fail, self.error, self.calls = fail, error, []

    def apply(self, version, state):
        self._maybe("apply")

    def test(self, version):
        self._maybe("test")

    def restore(self, state):
        self.calls.append("restore")
        return True

    def revoke(self, previous, current):
        self._maybe("revoke")

    def _maybe(self, step):
        self.calls.append(step)
        if self.fail == step:
            raise self.error("%s broke" % step)


@pytest.fixture
def store(tmp_path):
    return FileBackend({"file_path": str(tmp_path / "s.json")})


def run(store, target, check=False, **over):
    seen = []
    result, st = _rotation.rotate(store, target, "s", policy(**over), NOW, check, seen.extend)
    return result, st, seen


def test_rotate_registers_every_value_and_returns_markers_only(store):
    result, st, seen = run(store, FakeTarget())
    assert result["steps"] == ["stage", "apply", "test", "promote"] and st.current.version_id == "1"
    assert seen == [st.current.value["value"]]
    assert st.current.value["value"] not in repr(result)
    again, _state, seen = run(store, FakeTarget())
    assert again["changed"] is False and seen == [st.current.value["value"]]


def test_rejected_test_rolls_back_and_says_so(store):
    run(store, FakeTarget())
    target = FakeTarget(fail="test", error=_rotation.CredentialRejected)
    with pytest.raises(
        _rotation.RotationError,
        match=r"step 'test' failed: test broke\. pending <secret v3> was "
        r"rolled back; the current credential is unchanged",
    ) as err:
        run(store, target, force=True)
    assert err.value.details["failed_step"] == "test" and err.value.details["rolled_back"] is True
    assert target.calls == ["apply", "test", "restore"]
    assert store.read("s").pending is None


def test_unreachable_target_keeps_pending_for_the_next_run(store):
    run(store, FakeTarget())
    with pytest.raises(_rotation.RotationError, match=r"re-run to resume it.*set back to the current credential"):
        run(store, FakeTarget(fail="test"), force=True)
    assert store.read("s").pending is not None
    resumed, st, _seen = run(store, FakeTarget())
    assert resumed["resumed"] is True and st.pending is None


def test_revoke_failure_says_the_rotation_completed(store):
    run(store, FakeTarget())
    with pytest.raises(_rotation.RotationError, match="the new version is current and works; re-run to finish"):
        run(store, FakeTarget(fail="revoke"), force=True, revoke_previous=True, grace_seconds=0)


def test_read_failure_is_reported_as_the_plan_step(tmp_path):
    broken = FileBackend({"file_path": str(tmp_path / "missing-dir" / "s.json")})
    (tmp_path / "bad.json").write_text("{}")
    (tmp_path / "bad.json").chmod(0o600)
    with pytest.raises(_rotation.RotationError, match=r"before any step: .*not a locksmith secrets file") as err:
        run(FileBackend({"file_path": str(tmp_path / "bad.json")}), FakeTarget())
    assert err.value.details["failed_step"] == "plan"
    with pytest.raises(_rotation.RotationError, match="step 'stage' failed: directory of file_path"):
        run(broken, FakeTarget())


def test_check_mode_writes_nothing(store, tmp_path):
    result = run(store, FakeTarget(), check=True)[0]
    assert result["changed"] is True and result["steps"] == [] and not (tmp_path / "s.json").exists()


def test_hooks_and_url_check():
    calls = []

    def runner(argv, data, environ_update):
        calls.append((argv, environ_update))
        return (0 if argv[0] == "ok" else 3), "", "bad token %s" % data

    v = version("9", value="tok")
    target = _rotation_targets.GenericTarget({"apply_command": ["ok"], "test_command": ["no"]}, runner=runner)
    target.apply(v, None)
    assert calls == [(["ok"], {"LOCKSMITH_SECRET_VERSION": "9"})]
    with pytest.raises(_rotation.CredentialRejected, match=r"test_command no exited 3 for <secret v9>"):
        target.test(v)
    for status, error in ((401, _rotation.CredentialRejected), (500, _rotation.TargetUnavailable)):
        url_target = _rotation_targets.HmacTarget(
            {"test_url": "https://x/check"}, fetch_url=lambda url, headers, s=status: (None, {"status": s})
        )
        with pytest.raises(error, match="test_url https://x/check"):
            url_target.test(version("9", key="k"))
    _rotation_targets.HmacTarget({"test_url": "u"}, fetch_url=lambda url, headers: (None, {"status": 204})).test(
        version("9", key="k")
    )
    assert target.restore(state(current=v)) is True
    assert _rotation_targets.GenericTarget({}).restore(state(current=v)) is False


@pytest.mark.parametrize("roles", [["app"], ["app", "app"], ["app", "bad'; DROP ROLE x; --"]])
def test_alternating_roles_are_validated(roles):
    with pytest.raises(LocksmithError, match="roles"):
        _rotation_targets.PostgresAlternatingTarget({"roles": roles}).validate()


def test_alternating_picks_the_inactive_role():
    target = _rotation_targets.PostgresAlternatingTarget({"roles": ["app", "app_clone"]})
    assert target.inactive(SecretState()) == "app"
    assert target.inactive(state(current=version("1", username="app", password="p"))) == "app_clone"
    assert target.inactive(state(current=version("1", username="app_clone", password="p"))) == "app"


def test_run_hook_feeds_stdin_and_survives_commands_that_do_not_read_it():
    assert _rotation_targets.run_hook(["sh", "-c", 'cat; echo "$V" >&2'], "abc", {"V": "v1"}) == (0, "abc\n", "v1\n")
    for _round in range(5):  # `false` exits before reading: a broken pipe, not an error
        assert _rotation_targets.run_hook(["false"], "x" * 200000, {})[0] == 1
    with pytest.raises(
        _rotation.TargetUnavailable,
        match=r"'no-such-binary-x' could not run \(No such file or directory\); its first item must be a program",
    ):
        _rotation_targets.run_hook(["no-such-binary-x"], "x", {})


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (_rotation_targets.HmacTarget({"test_url": "not a url"}), "test_url 'not a url' holds a space"),
        (_rotation_targets.HmacTarget({"test_url": "ftp://x/check"}), "is not an http:// or https:// URL"),
        (
            _rotation_targets.GenericTarget({"test_url": "https://ops:Hunter2-url@x/check"}),
            r"test_url 'https://\*\*\*@x/check' holds a user name or password",
        ),
        (_rotation_targets.GenericTarget({"apply_command": ["/bin/true\x00x"]}), "apply_command holds a NUL byte"),
        (_rotation_targets.GenericTarget({"test_command": ["", "x"]}), "test_command holds a NUL byte or an empty"),
        (
            _rotation_targets.PostgresPasswordTarget({"role": "app", "test_url": "x"}),
            "test_url 'x' is not an http",
        ),
    ],
)
def test_targets_refuse_bad_hooks_and_urls_before_staging(target, message):
    with pytest.raises(LocksmithError, match=message) as err:
        target.validate()
    assert "Hunter2-url" not in str(err.value)


def test_a_hook_that_cannot_start_is_a_target_error_not_a_crash():
    with pytest.raises(_rotation.TargetUnavailable, match=r"could not run \(a NUL byte in it\)"):
        _rotation_targets.run_hook(["/bin/true\x00x"], "x", {})


def test_length_is_capped_before_anything_is_generated():
    with pytest.raises(LocksmithError, match="length 1099511627776 is too long; use at most 4096"):
        _rotation.generate_secret(1 << 40, ["lower"])
    assert len(_rotation.generate_secret(4096, ["lower"])) == 4096
