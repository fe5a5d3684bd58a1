"""Keep a timestamped copy of a file beside it before it is edited, and only the newest few."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Mapping

from ..errors import InputError, StepError
from ..plan import Plan
from . import Param, Step, register
from .file import changed_underfoot

if TYPE_CHECKING:
    from ..context import Context

# sha256 of the file, then its existing backups, oldest first, in one round trip.
LIST_SCRIPT: Final = ('[ -e "$1" ] || exit 3; sha256sum -- "$1"; '
                      'for f in "$1".backup-*; do [ -e "$f" ] && printf "%s\\n" "$f"; done; true')


@register
class Backup(Step):
    """cp -p the file to FILE.backup-<UTC time>; prune older backups beyond `keep`."""

    kind = "backup"
    params = {
        "path": Param(str, required=True, help="the file to back up"),
        "keep": Param(int, default=5, help="how many backups of this file to keep"),
        "before": Param(list, default=[], help="step ids: back up only when one of them changes something"),
    }

    def validate(self) -> None:
        if self.p["keep"] < 1:
            raise InputError(f"{self.spec.where}: step {self.id!r}: keep must be at least 1 (the backup just made)")

    def check(self, ctx: Context) -> Plan:
        path = self.p["path"]
        listing = ctx.transport(self.target).shell(LIST_SCRIPT, path, display=f"list backups of {path}")
        if listing.exit_code == 3:
            raise InputError(f"{ctx.target_name(self.target)}:{path} does not exist; nothing to back up",
                             hint="check compose_dir and compose_file")
        if not listing.ok:
            raise StepError(f"cannot list backups of {path}: {listing.output.strip()}")
        lines = listing.stdout.splitlines()
        sha, existing = lines[0].split()[0], sorted(lines[1:])
        name = f"{path}.backup-{ctx.run_id.split('-')[0]}"
        prune = existing[: max(0, len(existing) - (self.p["keep"] - 1))]
        commands = (f"cp -p -- {path} {name}", *(f"rm -f -- {old}" for old in prune))
        return self.plan(f"copy {path} to {name}" + (f", prune {len(prune)} older backup(s)" if prune else ""),
                         commands=commands, only_if_changed=tuple(self.p["before"]),
                         data={"backup": name, "sha256": sha, "prune": prune})

    def apply(self, ctx: Context, plan: Plan) -> None:
        transport = ctx.transport(self.target)
        now = transport.sha256(self.p["path"])
        if now != plan.data["sha256"]:
            raise changed_underfoot(f"{ctx.target_name(self.target)}:{self.p['path']}", now, plan.data["sha256"])
        ctx.record(self.id, backup=plan.data["backup"], sha256=plan.data["sha256"], pruned=plan.data["prune"])
        transport.copy(self.p["path"], plan.data["backup"])
        for old in plan.data["prune"]:
            transport.remove(old)

    def verify(self, ctx: Context, plan: Plan) -> str:
        found = ctx.transport(self.target).sha256(plan.data["backup"])
        if found != plan.data["sha256"]:
            raise StepError(f"backup {plan.data['backup']} has sha256 {found}, the file had {plan.data['sha256']}")
        return f"{plan.data['backup']} matches (sha256 {found[:12]})"

    def rollback(self, ctx: Context, entry: Mapping[str, Any]) -> str:
        return f"kept the backup {entry.get('backup')} (rollback never deletes a backup)"
