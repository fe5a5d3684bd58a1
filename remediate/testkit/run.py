"""A runbook bound to a lab host, and the assertions of the whole loop: the plan shows the change, apply fixes it,
a rerun is a no-op, rollback gives back every byte, a forced failure rolls back, diagnose finds the fault."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ruamel.yaml import YAML

from remediate import jsonin
from remediate.testkit.host import LabHost
from remediate.testkit.result import Result
from remediate.testkit.snapshot import FileState, Snapshot

if TYPE_CHECKING:
    from remediate.testkit.lab import Lab

#: The step forced_failure_rolls_back puts after the step it names: it fails, so everything before is rolled back.
FORCED: Final = "testkit-forced-failure"


class Run:
    """One runbook on one host with its variables. Each assertion runs the real CLI and returns its Result."""

    def __init__(self, lab: Lab, playbook: str, host: LabHost, vars: dict[str, Any], watch: tuple[str, ...]) -> None:
        self.lab, self.playbook, self.host, self.vars, self.watch = lab, playbook, host, vars, watch
        self._before: Snapshot | None = None  # the host before the last apply, over the files it was to touch
        self._applied: dict[str, Any] | None = None  # that apply's run record
        self._seen: list[str] = []  # every file a plan of this run named: plan_shows_change watches them
        self._fresh: Result | None = None  # the plan plan_shows_change just showed, which apply_fixes reads
        self._name: str | None = None

    def cli(self, command: str, *extra: str, playbook: str | None = None) -> Result:
        """`remediate COMMAND --host HOST -p PLAYBOOK -e K=V... EXTRA` against the lab."""
        self._fresh = None
        given = [arg for key, value in self.vars.items() for arg in ("-e", f"{key}={value}")]
        return self.lab.remediate(command, "--host", self.host.name, "-p", playbook or self.playbook, *given, *extra)

    # -- the loop --

    def plan_shows_change(self, *steps: str) -> Result:
        """plan exits 2 with a diff, commands or a reason for each change (each of `steps` among them), and the host
        is left as it was: the files it names, the compose folder's and watch's (bytes, mode, owner, not rewritten),
        and the compose project's containers (not re-created nor restarted)."""
        started = time.time_ns()
        before = Snapshot.take(self.host, [*self.watch, *self._seen, *self.host.compose_files()])
        plan = self.cli("plan").expect(2, f"plan of {self.playbook} on {self.host.name} should show changes")
        self._seen.extend(p for p in plan.paths() if p not in self._seen)
        changing = {s: e for s, e in plan.planned().items() if e["status"] == "change"}
        bare = [s for s, e in changing.items() if not (e.get("diffs") or e.get("commands") or e.get("reason"))]
        missing = [s for s in steps if s not in changing]
        if not changing or bare or missing:
            raise AssertionError(plan.failure(f"plan: steps changing {list(changing)}; expected {list(steps)} among "
                                              f"them, each with its diff, commands or reason (bare: {bare})"))
        changed = before.changes(Snapshot.take(self.host, before.files))
        changed += [f"{p}: written during the plan (its ctime is after the plan started)" for p in plan.paths()
                    if p not in before.files and os.path.exists(p) and os.stat(p).st_ctime_ns >= started]
        if changed:
            raise AssertionError(plan.failure("plan changed the host:\n" + "\n".join(changed)))
        self._fresh = plan
        return plan

    def apply_fixes(self) -> Result:
        """apply --yes exits 0, every step it applied verified, no step failed; what it changed is remembered for
        rerun_is_noop and rollback_is_byte_identical."""
        plan = self._fresh or self.cli("plan").expect(2, f"apply_fixes: the plan of {self.playbook} on "
                                                         f"{self.host.name} shows nothing to fix (inject the fault first)")
        before = Snapshot.take(self.host, [*self.watch, *plan.paths()])
        done = self.cli("apply", "--yes").expect(0, f"apply of {self.playbook} on {self.host.name} should fix it")
        applied, verified = done.steps("step_applied"), set(done.steps("step_verified"))
        unverified = [s for s in applied if s not in verified]
        if not applied or unverified or done.of("step_failed"):
            raise AssertionError(done.failure(f"apply: applied {applied}; not verified: {unverified}; failed: "
                                              f"{done.steps('step_failed')}"))
        self._before, self._applied = before, self.record()
        return done

    def rerun_is_noop(self) -> Result:
        """apply again exits 0, every step planned `ok` with its reason, nothing applied, and the host untouched:
        no file rewritten (bytes, mode, owner, mtime), no container re-created or restarted."""
        before = Snapshot.take(self.host, [*self.watch, *self._files_touched()])
        done = self.cli("apply", "--yes").expect(0, f"a second apply of {self.playbook} should do nothing")
        busy = {s: e["status"] for s, e in done.planned().items() if e["status"] != "ok" or not e.get("reason")}
        acted = done.steps("step_applied") + done.steps("step_verified")
        changed = before.changes(Snapshot.take(self.host, before.files))
        if busy or acted or changed:
            raise AssertionError(done.failure(f"the rerun was no no-op: steps not ok (or without a reason) {busy}, "
                                              f"applied or verified {acted}, host changes:\n" + "\n".join(changed)))
        return done

    def rollback_is_byte_identical(self) -> list[str]:
        """rollback --yes of the apply_fixes run exits 0, and every file it touched (its plan's and its journal's) is as before
        it, byte for byte with its mode and owner; a file it made is gone. Returns the files compared."""
        if self._before is None or self._applied is None:
            raise AssertionError("rollback_is_byte_identical: call apply_fixes() first (it records what to compare)")
        done = self.lab.remediate("rollback", "--yes", "--host", self.host.name, "--run", self._applied["run_id"])
        done.expect(0, f"rollback of {self.playbook} on {self.host.name} should succeed")
        problems = self._compare(self._before, self._applied)
        outcome = self.record(self._applied["run_id"])["outcome"]
        if problems or outcome != "rolled-back":
            raise AssertionError(done.failure(f"after rollback (the run's outcome: {outcome}):\n" + "\n".join(problems)))
        compared = sorted({*self._before.files, *self._paths_of(self._applied)})
        self._before = self._applied = None
        return compared

    def forced_failure_rolls_back(self, step: str) -> Result:
        """A step that fails, put right after `step` in a copy of the playbook: apply exits 1 naming it, every step
        it had applied (`step` among them) is rolled back, the run ends rolled-back, and the files are as before."""
        copy = self._with_failure_after(step)
        plan = self.cli("plan").expect(2, f"forced_failure_rolls_back: the plan of {self.playbook} shows nothing to "
                                          "change (inject the fault first, or roll back the last apply)")
        before = Snapshot.take(self.host, [*self.watch, *plan.paths()])
        done = self.cli("apply", "--yes", playbook=str(copy)).expect(1, f"apply with a failure after {step!r}")
        failed, applied, rolled = done.steps("step_failed"), done.steps("step_applied"), done.steps("step_rolled_back")
        left = [s for s in applied if s not in rolled and s != FORCED]
        record = self.record()
        problems = self._compare(before, record)
        if failed[:1] != [FORCED] or step not in applied or left or record["outcome"] != "rolled-back" or problems:
            raise AssertionError(done.failure(
                f"forced failure after {step!r}: failed {failed} (expected {FORCED!r} first), applied {applied} "
                f"(expected {step!r} among them), not rolled back {left}, outcome {record['outcome']!r}:\n"
                + "\n".join(problems)))
        return done

    def diagnose_finds_it(self, *checks: str) -> Result:
        """diagnose exits 3: its checks fail (each of `checks` among those), and the verdict proposes this playbook."""
        done = self.cli("diagnose").expect(3, f"diagnose -p {self.playbook} on {self.host.name} should find the fault")
        failing = [str(c["check"]) for c in done.of("check") if not c.get("ok")]
        fixes = (done.events[-1] if done.events else {}).get("fixes") or []
        if [c for c in checks if c not in failing] or self.name() not in fixes:
            raise AssertionError(done.failure(f"diagnose: failing checks {failing} (expected {list(checks)} among "
                                              f"them), fixes proposed {fixes} (expected {self.name()!r})"))
        return done

    def diagnose_is_clean(self) -> Result:
        """diagnose exits 0: every check passes."""
        return self.cli("diagnose").expect(0, f"diagnose -p {self.playbook} on {self.host.name} should find nothing")

    # -- what the assertions read --

    def record(self, run_id: str | None = None) -> dict[str, Any]:
        """A run record of this test (the newest, or run_id's): its outcome, and each step with the files it changed."""
        runs = self.lab.state / "remediate" / "runs"
        records = sorted((jsonin.last_object(p.read_bytes()) for p in runs.glob("*.json")), key=lambda r: str(r["run_id"]),
                         reverse=True) if runs.is_dir() else []
        found = [r for r in records if run_id in (None, r["run_id"])]
        if not found:
            raise AssertionError(f"no run record{' ' + run_id if run_id else ''} in {runs}")
        return dict(found[0])

    def source(self) -> Path:
        """The playbook's file: the path given, or where `remediate playbooks` finds the name."""
        if "/" in self.playbook or self.playbook.endswith((".yml", ".yaml")):
            return Path(self.playbook)
        listed = self.lab.remediate("playbooks", inventory=False)
        for event in listed.of("playbook"):
            if event.get("playbook") == self.playbook:
                return Path(event["path"])
        raise AssertionError(listed.failure(f"no playbook {self.playbook!r} on the search path"))

    def name(self) -> str:
        """The playbook's name: what a diagnose check's fix: says."""
        if self._name is None:
            source = self.source()
            self._name = str(YAML(typ="safe").load(source.read_text()).get("name") or source.stem)
        return self._name

    def _with_failure_after(self, step: str) -> Path:
        """A copy of the playbook with a failing command step after `step` (and without diagnose:, whose fix: paths
        are read from the playbook's own folder)."""
        document = YAML(typ="safe").load(self.source().read_text())
        ids = [s.get("id") for s in document["steps"]]
        if step not in ids:
            raise AssertionError(f"forced_failure_rolls_back: {self.playbook} has no step {step!r}; its steps: {ids}")
        document["steps"].insert(ids.index(step) + 1, {
            "id": FORCED, "kind": "command", "description": "A failure the test kit forces, to prove the rollback.",
            "params": {"command": ["sh", "-c", f"echo 'forced by the remediate test kit after {step}' >&2; exit 1"],
                       "undo": ["true"]}})  # it changes nothing: nothing to reverse (a command without undo says so)
        document.pop("diagnose", None)
        copy = self.lab.workdir / "forced" / f"{self.source().stem}.yml"
        copy.parent.mkdir(parents=True, exist_ok=True)
        with copy.open("w") as f:
            YAML(typ="safe").dump(document, f)
        return copy

    def _files_touched(self) -> list[str]:
        return self._paths_of(self._applied) if self._applied else []

    @staticmethod
    def _paths_of(record: dict[str, Any]) -> list[str]:
        return [str(f["path"]) for s in record.get("steps", []) for f in s.get("files") or []]

    def _compare(self, before: Snapshot, record: dict[str, Any]) -> list[str]:
        """How the host's files differ from `before` (its bytes) and from the run's journal (a file the run made
        must be gone; one it changed that `before` did not see must have its before-image's sha256)."""
        problems = before.content_changes(Snapshot.take(self.host, before.files))
        for step in record.get("steps", []):
            for f in step.get("files") or []:
                if f["path"] in before.files:
                    continue
                now = FileState.of(f["path"]).content
                if not f["existed"] and now is not None:
                    problems.append(f"{f['path']}: made by step {step['id']!r}, still there after the rollback")
                elif f["existed"] and (now is None or hashlib.sha256(now).hexdigest() != f["before_sha256"]):
                    problems.append(f"{f['path']}: not the bytes step {step['id']!r} found (sha256 "
                                    f"{str(f['before_sha256'])[:12]})")
        return problems
