"""The smallest complete step kind: a file that greets someone, with remediate's diff, journal and rollback; and
the smallest check type, which proves it (in diagnose:, or as an assert step)."""

from __future__ import annotations

from typing import Any

from remediate.diagnostics import CheckType, Facts, Verdict
from remediate.kinds import Param
from remediate.kinds.file import FileEdit
from remediate.transport import FileState


class Greeting(FileEdit):
    """Make a file say hello to someone."""

    kind = "example-greeting"
    params = {**FileEdit.params, "name": Param(str, required=True, help="who to greet")}

    def edit(self, ctx: Any, current: FileState | None) -> tuple[bytes | None, str]:
        wanted = f"hello, {self.p['name']}\n".encode()
        if current is not None and current.content == wanted:
            return None, f"{self.path} already greets {self.p['name']}"
        return wanted, f"greet {self.p['name']} in {self.path}"


class Greets(CheckType):
    """A file greets someone (a check type: for diagnose: and assert steps)."""

    name = "example-greets"
    params = {"path": Param(str, required=True), "name": Param(str, required=True, help="who must be greeted")}

    def run(self, facts: Facts) -> Verdict:
        state = facts.transport.read(self.p["path"])
        said = state.content.decode().strip() if state else "(no file)"
        return Verdict(said == f"hello, {self.p['name']}", f"{self.p['path']} says {said!r}")
