"""Run a command, idempotently: `creates` or `unless` says when it is already done, `undo` reverses it."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from remediate.contract.plan import Applied, Plan
from remediate.errors import NotReversed, StepError
from remediate.kinds import Param, Step, argv, register

if TYPE_CHECKING:
    from remediate.contract.host import StepContext as Context

Command = (str, list)


@register
class RunCommand(Step):
    """A command with a read-only test for 'already done' and an optional undo."""

    kind = "command"
    params = {
        "command": Param(Command, required=True, command=True,
                         help="the command, as a list or a string split like a shell would"),
        "creates": Param(str, help="a path; when it exists there is nothing to do"),
        "unless": Param(Command, command=True, help="a read-only command; when it exits 0 there is nothing to do"),
        "verify": Param(Command, command=True, help="a command that must exit 0 after apply"),
        "undo": Param(Command, command=True, help="the command that reverses this one, for rollback; without it a "
                      "rollback that reaches this step says it is not reversed (ROLLBACK INCOMPLETE) until skipped, "
                      "and `undo: [true]` says there is nothing to reverse"),
    }

    def plan(self, ctx: Context) -> Plan:
        transport = ctx.transport(self.target)
        command = shlex.join(argv(self.p["command"]))
        if self.p["creates"] and transport.exists(self.p["creates"]):
            return self.planned(f"{self.p['creates']} exists")
        if self.p["unless"] is not None:
            result = transport.run(argv(self.p["unless"]))
            if result.ok:
                return self.planned(f"`{result.command}` exits 0")
        why = "no creates/unless test: it runs on every apply" if not (self.p["creates"] or self.p["unless"]) else "not done yet"
        if self.p["undo"] is None:
            why += "; no undo: a rollback cannot reverse it"
        return self.planned(why, commands=(command,))

    def apply(self, ctx: Context, plan: Plan) -> None:
        transport = ctx.transport(self.target)
        undo = argv(self.p["undo"]) if self.p["undo"] is not None else None
        ctx.record(self.id, via=transport, undo=undo)  # the host's copy goes with the command, before it
        result = transport.run(argv(self.p["command"]), timeout=600)
        ctx.note(self.id, results=[result.summary()])
        if not result.ok:
            raise StepError(f"`{result.command}` exited {result.exit_code}: {result.output.strip()[-300:] or '(no output)'}")

    def verify(self, ctx: Context, plan: Plan, applied: Applied) -> str:
        transport = ctx.transport(self.target)
        if self.p["verify"] is not None:
            test = self.p["verify"]
        elif self.p["unless"] is not None:
            test = self.p["unless"]
        elif self.p["creates"]:
            if not transport.exists(self.p["creates"]):
                raise StepError(f"{self.p['creates']} does not exist after the command ran")
            return f"{self.p['creates']} exists"
        else:
            return "command exited 0"
        result = transport.run(argv(test))
        if not result.ok:
            raise StepError(f"verification `{result.command}` exited {result.exit_code}: {result.output.strip()[-300:]}")
        return f"`{result.command}` exits 0"

    def rollback(self, ctx: Context, entry: Mapping[str, Any]) -> str:
        undo = entry.get("undo")
        if not undo:  # what the command did is unknown here: never said to be undone
            raise NotReversed(f"not reversed: `{shlex.join(argv(self.p['command']))}` ran and the step gives no undo "
                              f"command; once the host is as you want it, run the rollback again with --skip {self.id}")
        result = ctx.transport(self.target).run(undo, timeout=600)
        if not result.ok:
            raise StepError(f"undo `{result.command}` exited {result.exit_code}: {result.output.strip()[-300:]}")
        return f"ran `{result.command}`"
