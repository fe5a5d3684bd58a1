"""Keep a timestamped copy of a file beside it before it is edited, and only the newest few."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from remediate.contract.plan import Applied, Plan
from remediate.errors import InputError, StepError
from remediate.kinds import Param, Step, register
from remediate.kinds.file import changed_underfoot

if TYPE_CHECKING:
    from remediate.contract.host import StepContext as Context


@register
class Backup(Step):
    """cp -p the file to FILE.backup-<UTC time>; prune older backups beyond `keep`."""

    kind = "backup"
    params = {
        "path": Param(str, required=True, help="the file to back up"),
        "keep": Param(int, default=5, help="how many backups of this file to keep"),
    }

    def validate(self) -> None:
        if self.p["keep"] < 1:
            raise InputError(f"{self.spec.where}: step {self.id!r}: keep must be at least 1 (the backup just made)")

    def reads_ahead(self) -> list[tuple[str, ...]]:
        return [("list_backups", self.p["path"])] if isinstance(self.p["path"], str) else []

    def plan(self, ctx: Context) -> Plan:
        path = self.p["path"]
        listing = ctx.transport(self.target).operation("list_backups", path, display=f"list backups of {path}")
        if listing.exit_code == 3:
            raise InputError(f"{ctx.target_name(self.target)}:{path} does not exist; nothing to back up",
                             hint="check compose_dir and compose_file")
        if not listing.ok:
            raise StepError(f"cannot list backups of {path}: {listing.output.strip()}")
        lines = listing.stdout.splitlines()
        sha, existing = lines[0].split()[0], sorted(lines[1:])
        name = f"{path}.backup-{ctx.run_id.split('-')[0]}"
        prune = [old for old in existing if old != name][: max(0, len(existing) - (self.p["keep"] - 1))]
        commands = (f"cp -p -- {path} {name}", *(f"rm -f -- {old}" for old in prune))
        return self.planned(f"copy {path} to {name}" + (f", prune {len(prune)} older backup(s)" if prune else ""),
                         commands=commands, data={"backup": name, "sha256": sha, "prune": prune})

    def apply(self, ctx: Context, plan: Plan) -> Applied:
        transport = ctx.transport(self.target)
        where = f"{ctx.target_name(self.target)}:{self.p['path']}"
        ctx.record(self.id, via=transport, backup=plan.data["backup"], sha256=plan.data["sha256"],
                   prune=plan.data["prune"])  # the host's copy goes with the copy command, before it
        # On the host (onhost.backups.backup), in one round trip: only if the file still has the planned sha256, a
        # private copy hard-linked to the first free name (a name planted there is never written through). The older
        # backups are pruned once the whole run is verified (settle): a run rolled back keeps every one of them.
        result = transport.operation("backup", self.p["path"], plan.data["sha256"], plan.data["backup"],
                                     display=f"back up {self.p['path']} to {plan.data['backup']}")
        if result.exit_code == 9:
            raise changed_underfoot(where, result.stderr.strip() or None, plan.data["sha256"])
        if not result.ok:
            raise StepError(f"cannot back up {where}: {result.output.strip()[-300:]}")
        made, read_back = (result.stdout.splitlines() + ["", ""])[:2]
        if made != plan.data["backup"]:
            ctx.record(self.id, backup=made, name_taken=plan.data["backup"])
        return Applied(read_back={made: read_back} if read_back else {}, data={"made": made})

    def verify(self, ctx: Context, plan: Plan, applied: Applied) -> str:
        """The backup's sha256 as read back by the copy itself (no second round trip), else read now."""
        made = str(applied.data.get("made") or plan.data["backup"])
        found = applied.read_back.get(made) or ctx.transport(self.target).sha256(made)
        if found is None or found != plan.data["sha256"]:
            raise StepError(f"backup {made} " + ("does not exist" if found is None else f"has sha256 {found}")
                            + f", the file had {plan.data['sha256']}")
        taken = f" ({plan.data['backup']} was taken by something else)" if made != plan.data["backup"] else ""
        return f"{made} matches (sha256 {found[:12]}){taken}"

    def rollback(self, ctx: Context, entry: Mapping[str, Any]) -> str:
        settled = str(entry.get("settled") or "")
        pruned = f"; the run had succeeded and {settled.removeprefix('pruned ')}: those are gone" \
            if settled.startswith("pruned ") else "; none was pruned"
        return f"kept the backup {entry.get('backup')} (rollback never deletes a backup){pruned}"

    def settle(self, ctx: Context, plan: Plan, entry: Mapping[str, Any]) -> str | None:
        """The older backups the plan named, pruned now that the run is verified; never the one this run made."""
        if not plan.data["prune"]:
            return None
        made = str(entry.get("backup") or plan.data["backup"])
        result = ctx.transport(self.target).operation("prune_backups", self.p["path"], made, *plan.data["prune"],
                                                      display=f"prune {len(plan.data['prune'])} older backup(s) of "
                                                              f"{self.p['path']}")
        if not result.ok:
            raise StepError(f"the older backups of {self.p['path']} were not pruned: "
                            f"{result.output.strip()[-300:] or f'exit {result.exit_code}'}")
        gone = result.stdout.splitlines()  # one name a line: a name may hold a space
        return f"pruned {len(gone)} older backup(s): {', '.join(gone)}" if gone else "no older backup left to prune"
