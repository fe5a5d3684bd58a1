"""Keep a timestamped copy of a file beside it before it is edited, and only the newest few."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from remediate.contract.plan import Applied, Plan
from remediate.errors import InputError, StepError
from remediate.kinds import Param, Step, register
from remediate.kinds.file import changed_underfoot
from remediate.transport import PRIVATE_TEMP

if TYPE_CHECKING:
    from remediate.contract.host import StepContext as Context

# sha256 of the file, then its existing backups (regular files only, never a link), in one round trip.
LIST_SCRIPT: Final = ('[ -e "$1" ] || exit 3; sha256sum < "$1"; '
                      'for f in "$1".backup-*; do [ -f "$f" ] && [ ! -L "$f" ] && printf "%s\\n" "$f"; done; true')
# In one round trip: refuse unless the file still has the planned sha256 (exit 9); copy it (cp -p, through the
# descriptor) to a private temporary file (PRIVATE_TEMP) and hard-link that to the first free name of $3, $3.1,
# $3.2 ... (a link never follows or replaces an existing path, so a name planted by someone else, even a symlink,
# is never written through); print the name; then prune the older backups named after it, skipping the new one,
# links and anything not a regular file.
BACKUP_SCRIPT: Final = """set -eu
src=$1 want=$2 name=$3; shift 3
now=$(sha256sum < "$src")
now=${now%% *}
[ "$now" = "$want" ] || { printf '%s\\n' "$now" >&2; exit 9; }
dir=${name%/*}
""" + PRIVATE_TEMP + """
cp -p -- "$src" "$fd"
exec 3>&-
made=
for suffix in "" .1 .2 .3 .4 .5 .6 .7 .8 .9; do
    if ln -- "$tmp" "$name$suffix" 2>/dev/null; then made=$name$suffix; break; fi
done
[ -n "$made" ] || { echo "every name from $name to $name.9 is taken" >&2; exit 8; }
sum=$(sha256sum < "$made")
printf '%s\\n%s\\n' "$made" "${sum%% *}"
for old in "$@"; do
    [ "$old" != "$made" ] && [ -f "$old" ] && [ ! -L "$old" ] && rm -f -- "$old"
done
exit 0"""


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

    def plan(self, ctx: Context) -> Plan:
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
        prune = [old for old in existing if old != name][: max(0, len(existing) - (self.p["keep"] - 1))]
        commands = (f"cp -p -- {path} {name}", *(f"rm -f -- {old}" for old in prune))
        return self.planned(f"copy {path} to {name}" + (f", prune {len(prune)} older backup(s)" if prune else ""),
                         commands=commands, data={"backup": name, "sha256": sha, "prune": prune})

    def apply(self, ctx: Context, plan: Plan) -> Applied:
        transport = ctx.transport(self.target)
        where = f"{ctx.target_name(self.target)}:{self.p['path']}"
        ctx.record(self.id, via=transport, backup=plan.data["backup"], sha256=plan.data["sha256"],
                   pruned=plan.data["prune"])  # the host's copy goes with the copy command, before it
        result = transport.shell(BACKUP_SCRIPT, self.p["path"], plan.data["sha256"], plan.data["backup"],
                                 *plan.data["prune"], display=f"back up {self.p['path']} to {plan.data['backup']}")
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
        return f"kept the backup {entry.get('backup')} (rollback never deletes a backup)"
