"""The smallest complete step kind: a file that greets someone, with remediate's diff, journal and rollback."""

from __future__ import annotations

from typing import Any

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
