# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""The rotation protocol (stage, apply, test, promote, revoke), its policy and its metrics.

Write-ahead: a new value is stored as the pending version BEFORE any target sees it, so a crash
never loses a credential that was set. Each step is idempotent and every run starts from what the
store holds: a leftover pending version is resumed (or rolled back), never staged twice. Nothing
untested becomes current. No secret value ever appears in what this file returns or raises; results
carry version ids (``<secret vN>``), timestamps and the step reached.
"""

from __future__ import annotations

import math
import secrets
import string
import time

from ansible_collections.locksmith.ops.plugins.module_utils import _metrics
from ansible_collections.locksmith.ops.plugins.module_utils._errors import LocksmithError
from ansible_collections.locksmith.ops.plugins.module_utils._secrets_backend import secret_strings

STEPS = ("stage", "apply", "test", "promote", "revoke")
CHARACTER_CLASSES = ("lower", "upper", "digits", "symbols")
DEFAULT_SYMBOLS = "-_.~+=^"
MAX_LENGTH = 4096


class RotationError(LocksmithError):
    """A step of the protocol failed; details name the step and what the store and target now hold."""


class TargetUnavailable(LocksmithError):
    """The target could not be reached or changed; the credential was not judged."""


class CredentialRejected(LocksmithError):
    """The target was reached and refused the credential under test."""


# ---- policy ---------------------------------------------------------------------------------
def generate_secret(length, classes, symbols=DEFAULT_SYMBOLS):
    """A random string of ``length`` with at least one character of every class in ``classes``."""
    pools = []
    for name in classes:
        pool = {"lower": string.ascii_lowercase, "upper": string.ascii_uppercase, "digits": string.digits}.get(
            name, symbols
        )
        if not pool:
            raise LocksmithError("character_classes has 'symbols' but symbols is empty; set symbols or drop the class")
        # libpq SASLpreps a non-ASCII password at login (U+FB01 becomes 'fi') while the verifier is made from the
        # value as is, and HTTP headers carry ASCII only: such a value could never pass its test.
        if not all(char.isascii() and char.isprintable() for char in pool):
            raise LocksmithError(
                "symbols %s holds a character that is not printable ASCII; use ASCII punctuation such as %s"
                % (ascii(symbols), DEFAULT_SYMBOLS)
            )
        pools.append(pool)
    if not pools:
        raise LocksmithError("character_classes is empty; name at least one of %s" % ", ".join(CHARACTER_CLASSES))
    if length < max(len(pools), 16):
        raise LocksmithError("length %d is too short; use at least 16 (and one per character class)" % length)
    if length > MAX_LENGTH:
        raise LocksmithError("length %d is too long; use at most %d" % (length, MAX_LENGTH))
    chars = [secrets.choice(pool) for pool in pools]
    alphabet = "".join(pools)
    chars += [secrets.choice(alphabet) for _index in range(length - len(chars))]
    # Fisher-Yates with the CSPRNG, so the guaranteed characters are not always first.
    for i in range(len(chars) - 1, 0, -1):
        j = secrets.randbelow(i + 1)
        chars[i], chars[j] = chars[j], chars[i]
    return "".join(chars)


class Policy:
    """When to rotate, how to generate, what to do with leftovers; built from module params."""

    def __init__(self, params):
        self.length = params["length"]
        self.classes = params["character_classes"]
        self.symbols = params["symbols"]
        self.min_age = params["min_age_seconds"]
        self.max_age = params["max_age_seconds"]
        self.grace = params["grace_seconds"]
        self.force = params["force"]
        self.revoke_previous = params["revoke_previous"]
        self.on_pending = params["on_pending"]
        self.stop_after = params["stop_after"]

    def validate(self):
        for name in ("min_age", "max_age", "grace"):
            if getattr(self, name) < 0:
                raise LocksmithError("%s_seconds must be 0 or more" % name)
        if self.max_age < self.min_age:
            # Overdue (and alerting) before any run may rotate it: a policy no schedule can keep.
            raise LocksmithError(
                "max_age_seconds (%d) is below min_age_seconds (%d): the secret would be reported overdue before a "
                "run may rotate it; raise max_age_seconds or lower min_age_seconds" % (self.max_age, self.min_age)
            )
        generate_secret(self.length, self.classes, self.symbols)

    def generate(self):
        return generate_secret(self.length, self.classes, self.symbols)


def plan(state, policy, target, now):
    """Which steps this run takes, and why; reads nothing, writes nothing."""
    steps, resume = [], False
    current, previous, pending = state.current, state.previous, state.pending
    promoted = state.promoted_at or (current.created if current else None)
    if pending is not None:
        if policy.on_pending == "rollback":
            # A pending version without the target's field (made by hand) was never applied: nothing to lose.
            if target.applies() and target.usable(pending) and not target.can_restore(state):
                # A refused first rotation leaves the target on the pending value with nothing to set back:
                # dropping it would leave the target with a credential no store holds.
                failure = RotationError(
                    "pending %s cannot be rolled back: there is no usable current version to set back on the "
                    "target, which may already hold the pending value (a refused first rotation leaves it there), "
                    "and dropping it would lose the only copy of that credential. Fix what its test refused and "
                    "re-run with on_pending: resume to finish it, or set the credential on the target by hand and "
                    "then remove the pending version from the store. Nothing was changed." % pending.marker(),
                    failed_step="plan",
                )
                failure.state = state
                raise failure
            reason = "pending %s was left by an earlier run; on_pending is rollback" % pending.marker()
            return {"due": True, "reason": reason, "steps": ["rollback"], "resume": False}
        if not isinstance(pending.value, dict) or not isinstance(pending.value.get(target.field), str):
            # A label planted by hand (or another tool's version): resuming it would apply and promote a value
            # this module never generated.
            failure = RotationError(
                "pending %s has no '%s' field, so secret_rotate did not stage it; remove that pending label in "
                "the store, or set on_pending: rollback" % (pending.marker(), target.field),
                failed_step="plan",
            )
            failure.state = state
            raise failure
        resume, steps = True, ["apply", "test", "promote"]
        reason = "pending %s was left by an earlier run; resuming it (nothing new is staged)" % pending.marker()
    elif current is None:
        steps, reason = ["stage", "apply", "test", "promote"], "no current version yet"
    else:
        age = now - promoted
        grace_left = (promoted + policy.grace) - now
        if target.grace_blocks and previous is not None and grace_left > 0:
            reason = (
                "previous %s is still in its grace period for %ds; rotating now would cut off its users "
                "(grace_seconds: 0 rotates at once)" % (previous.marker(), math.ceil(grace_left))
            )
        elif policy.force:
            steps, reason = ["stage", "apply", "test", "promote"], "force is set"
        elif age >= policy.min_age:
            steps = ["stage", "apply", "test", "promote"]
            reason = "current %s is %ds old, min_age_seconds is %d" % (current.marker(), age, policy.min_age)
        else:
            reason = "current %s is %ds old, younger than min_age_seconds (%d); force: true rotates now" % (
                current.marker(),
                age,
                policy.min_age,
            )
    due = bool(steps)
    if policy.revoke_previous:
        if "promote" in steps:
            if current is not None and policy.grace == 0:
                steps.append("revoke")
        elif previous is not None and now >= promoted + policy.grace:
            steps.append("revoke")
    if policy.stop_after:
        steps = [s for s in steps if STEPS.index(s) <= STEPS.index(policy.stop_after)]
    return {"due": due, "reason": reason, "steps": steps, "resume": resume}


def summary(secret, backend_name, target, state, policy, now):
    """The `secret` result key: ids and times, never a value."""
    current = state.current
    promoted = state.promoted_at or (current.created if current else None)
    out = {
        "name": secret,
        "backend": backend_name,
        "target": target.name,
        "current_version": current.version_id if current else None,
        "previous_version": state.previous.version_id if state.previous else None,
        "pending_version": state.pending.version_id if state.pending else None,
        "promoted_timestamp": promoted,
        "age_seconds": round(now - promoted, 3) if promoted else None,
        "overdue": bool(promoted is None or now - promoted > policy.max_age),
        "next_due_timestamp": (promoted + policy.min_age) if promoted else None,
    }
    if current is not None and "username" in current.value:
        out["username"] = current.value["username"]
    return out


# ---- the protocol ---------------------------------------------------------------------------
def rotate(backend, target, secret, policy, now, check_mode, register):
    """Run the planned steps; -> (result dict, state). Raises RotationError naming the failed step."""
    state = None
    try:
        state = backend.read(secret)
        register(state.values())
        target.check(state)
    except LocksmithError as err:
        failure = RotationError(
            "reading the state of %s failed before any step: %s. Nothing was changed."
            % (backend.describe(secret), err.msg),
            failed_step="plan",
        )
        failure.state = state
        raise failure from err
    the_plan = plan(state, policy, target, now)
    before = state.markers()
    result = {
        "rotation_due": the_plan["due"],
        "reason": the_plan["reason"],
        "planned_steps": list(the_plan["steps"]),
        "steps": [],
        "step": "none",
        "resumed": the_plan["resume"],
        "rolled_back": False,
        "changed": bool(the_plan["steps"]),
    }
    if check_mode or not the_plan["steps"]:
        after = predict_markers(state, the_plan["steps"], backend.next_version_hint(state))
        return dict(result, diff={"before": before, "after": after}), state
    for step in the_plan["steps"]:
        try:
            state = _run_step(step, backend, target, secret, policy, state, now, register)
        except LocksmithError as err:
            raise _failure(err, step, state, target, backend, secret, result) from err
        result["steps"].append(step)
        result["step"] = step
    result["rolled_back"] = "rollback" in result["steps"]
    result["diff"] = {"before": before, "after": state.markers()}
    return result, state


def _run_step(step, backend, target, secret, policy, state, now, register):
    if step == "stage":
        value = target.new_value(state, policy.generate())
        register(secret_strings(value))
        return backend.stage(secret, state, value, now)
    if step == "apply":
        target.apply(state.pending, state)
        return state
    if step == "test":
        # Read back what the store holds, so the target is tested with exactly the stored value.
        stored = backend.read(secret)
        if stored.pending is None or stored.pending.value != state.pending.value:
            raise TargetUnavailable("the pending version read back from the store differs from the one applied")
        for old in (stored.current, stored.previous):
            if old is not None and old.value.get(target.field) == stored.pending.value.get(target.field):
                raise CredentialRejected("%s repeats the value of %s" % (stored.pending.marker(), old.marker()))
        target.test(stored.pending)
        return stored
    if step == "promote":
        # Stamp the promotion when it happens: the grace period starts now, not when the run began.
        return backend.promote(secret, state, max(now, time.time()))
    if step == "revoke":
        target.revoke(state.previous, state.current)
        return backend.drop_previous(secret, state)
    target.restore(state)  # rollback
    return backend.discard_pending(secret, state)


def _failure(err, step, state, target, backend, secret, result):
    """Put the target back on the current credential where the step left it elsewhere; explain."""
    details = dict(result, failed_step=step)
    details.pop("changed", None)
    restored = rolled_back = kept = False
    note = ""
    if step in ("apply", "test", "promote") and state.pending is not None:
        try:
            restored = target.restore(state)
        except LocksmithError as second:
            note = " Restoring the target failed too: %s." % second.msg
        # Where the target now holds the pending value and nothing could be set back (no usable current version),
        # dropping it would lose the one credential in force: it stays pending instead.
        kept = isinstance(err, CredentialRejected) and not restored and target.applies()
        if isinstance(err, CredentialRejected) and not note and not kept:
            try:
                backend.discard_pending(secret, state)
                rolled_back = True
            except LocksmithError as second:
                note = " Dropping the pending version failed: %s." % second.msg
    if step == "revoke":
        tail = "the new version is current and works; re-run to finish revoking the previous one."
    elif rolled_back:
        tail = "pending %s was rolled back; the current credential is unchanged and works." % state.pending.marker()
    elif kept:
        tail = (
            "the target now holds pending %s and no current version could be set back, so it stays in the store: "
            "fix what the test refused and re-run to resume it." % state.pending.marker()
        )
    elif state.pending is not None:
        tail = "pending %s stays in the store: re-run to resume it, or set on_pending: rollback." % (
            state.pending.marker()
        )
        if restored:
            tail += " The target was set back to the current credential."
    else:
        tail = "nothing was staged; the current credential is unchanged."
    details.update(restored_target=bool(restored), rolled_back=rolled_back)
    failure = RotationError("step '%s' failed: %s. %s%s" % (step, err.msg, tail, note), **details)
    failure.state = state
    return failure


def predict_markers(state, steps, hint):
    """The diff's `after` as the steps would leave it (check mode, or nothing to do)."""
    markers = state.markers()
    if "stage" in steps:
        markers["pending"] = "<secret v%s>" % hint
    if "promote" in steps:
        markers["previous"], markers["current"], markers["pending"] = markers["current"], markers["pending"], None
    if "revoke" in steps:
        markers["previous"] = None
    if "rollback" in steps:
        markers["pending"] = None
    return markers


def metric_families(secret, state, status, max_age):
    """The three locksmith_secret_* families of docs/metrics.md for one secret."""
    promoted = state.promoted_at or (state.current.created if state.current else 0)
    return [
        _metrics.Family(
            "locksmith_secret_last_rotation_timestamp_seconds", "Newest successful promotion to current."
        ).add(promoted or 0, secret=secret),
        _metrics.Family("locksmith_secret_rotation_last_status", "1 if the newest rotation attempt completed.").add(
            1 if status else 0, secret=secret
        ),
        _metrics.Family("locksmith_secret_max_age_seconds", "Rotation is overdue past this age.").add(
            max_age, secret=secret
        ),
    ]
