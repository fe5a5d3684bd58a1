"""Steps that rewrite one file: diff in the plan, before-image kept, atomic write, byte-exact undo."""

from __future__ import annotations

import os
import posixpath
import secrets
import time
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from remediate.contract.plan import Applied, FileChange, Plan
from remediate.errors import ConflictError, InputError, StepError
from remediate.kinds import LOCAL, Param, Step, register
from remediate.transport import FileState, Transport, read_ask, sha256

if TYPE_CHECKING:
    from remediate.contract.host import StepContext as Context

# How many of the folders given (a file's, then each above it) do not exist, counted until the first that does. The
# names go as arguments and only a number comes back: a name with a line break or a space is never parsed.
MISSING_FOLDERS = 'n=0; for d; do [ -e "$d" ] && break; n=$((n+1)); done; printf "%s\\n" "$n"'
# rmdir each folder given, innermost first. Each one not removed is said by its position, one a line: "gone N"
# (already), "full N" (something else is in it) or "kept N" (rmdir refused it otherwise).
REMOVE_FOLDERS = ('i=0; for d; do if ! rmdir -- "$d" 2>/dev/null; then '
                  'if [ ! -e "$d" ] && [ ! -L "$d" ]; then echo "gone $i"; '
                  'elif [ -n "$(ls -A -- "$d" 2>/dev/null)" ]; then echo "full $i"; else echo "kept $i"; fi; fi; '
                  'i=$((i+1)); done')
#: What rollback says of the folders a step made, by what REMOVE_FOLDERS answered of them.
FOLDERS_SAID = {"removed": "removed the folder(s) it made: {}", "gone": "the folder(s) it made were gone already: {}",
                "full": "kept {} (not empty: something else is in it now)", "kept": "kept {} (rmdir refused it)"}


class FileEdit(Step):
    """Base for steps whose whole effect is new content for one file."""

    params = {"path": Param(str, required=True, help="the file to edit")}

    @property
    def path(self) -> str:
        """The file; on the operator's machine made absolute, so rollback works from any folder."""
        path = str(self.p["path"])
        return os.path.abspath(path) if self.target == LOCAL and path else path

    def reads_ahead(self) -> list[tuple[str, ...]]:
        return [read_ask(self.path)] if isinstance(self.p["path"], str) else []

    @abstractmethod
    def edit(self, ctx: Context, current: FileState | None) -> tuple[bytes | None, str]:
        """The file's new content (None: nothing to do) and the reason, read-only."""

    def new_mode(self) -> int | None:
        """Mode for a file that does not exist yet."""
        return None

    def refuse_link(self, ctx: Context, current: FileState | None) -> None:
        if current is not None and current.link:
            raise InputError(f"{ctx.target_name(self.target)}:{current.path} is a symbolic link to {current.link}; "
                             "remediate never writes through a link (whoever can change the link chooses what gets written)",
                             hint=f"name the file itself: set the path to {current.link}")

    def plan(self, ctx: Context) -> Plan:
        current = ctx.read(self.target, self.path)
        self.refuse_link(ctx, current)
        new, reason = self.edit(ctx, current)
        if new is None or (current is not None and new == current.content):
            return self.planned(reason)
        change = FileChange(self.path, ctx.target_name(self.target), None if current is None else current.content, new,
                            None if current is None else current.mode,
                            None if current is None else (current.uid, current.gid))
        ctx.expect(change, current, self.new_mode())
        folders = self._missing_folders(ctx) if current is None else []
        if folders:
            reason += f" (and its folder{'s' if len(folders) > 1 else ''} {', '.join(folders)})"
        return self.planned(reason, files=(change,), data={"folders": folders})

    def _missing_folders(self, ctx: Context) -> list[str]:
        """The folders above a new file that do not exist yet (nor are planned), outermost first."""
        planned = ctx.overlay_dirs.setdefault(ctx.target_name(self.target), set())
        above = []  # the file's folder, then each above it, up to the root (not asked)
        folder = posixpath.dirname(self.path)
        while folder and folder != posixpath.dirname(folder):
            above.append(folder)
            folder = posixpath.dirname(folder)
        if not above:
            return []
        found = ctx.transport(self.target).shell(MISSING_FOLDERS, *above, check=True,
                                                 display=f"which folders of {self.path} exist")
        missing = [d for d in reversed(above[:int(found.stdout.strip())]) if d not in planned]
        planned.update(missing)
        return missing

    def apply(self, ctx: Context, plan: Plan) -> Applied:
        read_back: dict[str, str] = {}
        folders = list(plan.data.get("folders") or [])
        if folders:
            ctx.record(self.id, folders=folders)
            # each made 0755 and its name synced into its parent, before the file written in them is answered for
            ctx.transport(self.target).operation("make_folders", *folders, check=True,
                                                 display=f"mkdir -m 755 -- {' '.join(folders)}")
        recorded: list[dict[str, Any]] = []
        for change in plan.files:
            read_back[change.path] = write_file(ctx, self, change, recorded,
                                                mode=self.new_mode() if change.before is None else None)
        return Applied(read_back=read_back)

    def verify(self, ctx: Context, plan: Plan, applied: Applied) -> str:
        """The sha256 the write read back from disk after its rename (no second round trip), else read now."""
        transport = ctx.transport(self.target)
        for change in plan.files:
            found = applied.read_back.get(change.path) or transport.sha256(change.path)
            if found != change.after_sha256:
                raise StepError(f"{change.target}:{change.path} has sha256 {found}, expected {change.after_sha256}")
        return "file content verified by sha256"

    def rollback(self, ctx: Context, entry: Mapping[str, Any]) -> str:
        transport = ctx.transport(self.target)
        done = [restore_file(transport, f, force=ctx.force, earlier=ctx.earlier_states(self.id, f))
                for f in entry.get("files") or []]
        folders = list(reversed(entry.get("folders") or []))  # innermost first
        if folders:
            answer = transport.shell(REMOVE_FOLDERS, *folders, check=True, display=f"rmdir {' '.join(folders)}")
            found = {n: what for what, n in (line.split() for line in answer.stdout.splitlines() if line)}
            which = [found.get(str(n), "removed") for n in range(len(folders))]
            done += [said.format(", ".join(d for d, w in zip(folders, which) if w == what))
                     for what, said in FOLDERS_SAID.items() if what in which]
        return "; ".join(d for d in done if d) or "nothing to undo"


def write_file(ctx: Context, step: Step, change: FileChange, recorded: list[dict[str, Any]], *,
               mode: int | None = None) -> str:
    """Journal, then in one round trip: refuse if the file changed since the plan, keep its before-image, write.
    recorded: the files this step wrote before this one (their journal entries stay). Returns the sha256 read
    back from disk after the write."""
    transport = ctx.transport(step.target)
    backup = None
    if change.before is not None:
        backup = posixpath.join(ctx.backup_dir(step.target, change.path), f"{posixpath.basename(change.path)}.{step.id}")
    uid, gid = change.before_owner or (0, 0)
    recorded.append({
        "path": change.path,
        "target": change.target,
        "existed": change.before is not None,
        "before_sha256": change.before_sha256,
        "after_sha256": change.after_sha256,
        "backup": backup,
        "mode": None if change.before_mode is None else f"{change.before_mode:o}",
        "owner": None if change.before is None else f"{uid}:{gid}",
    })
    ctx.record(step.id, via=transport, files=recorded)  # the host's copy goes with the write, before it
    try:
        return transport.write(change.path, change.after, mode=mode, expect=change.expect, backup=backup)
    except ConflictError:
        recorded.pop()
        ctx.record(step.id, files=recorded)  # this one was not written: nothing for rollback to restore
        raise


def changed_underfoot(where: str, now: str | None, planned: str | None) -> ConflictError:
    """The error for a file someone else changed between the plan and the write."""
    return ConflictError(f"{where} changed since the plan (sha256 {now}, planned on {planned}); "
                         "refusing to overwrite someone else's edit",
                         hint="run `remediate plan` again and review the new diff")


def undone(now: FileState | None, entry: Mapping[str, Any],
           earlier: Sequence[tuple[str, Mapping[str, Any]]] = ()) -> str | None:
    """How a file of a step's journal entry is already undone, or None. As before the step (its content). Or, not as
    the step left it, but exactly in the before-state of an earlier step of the run that wrote it too (content, mode
    and owner: earlier, from StepContext.earlier_states): undone further than this step, by a rollback cut short
    before its records were kept, or by hand; that step's own undo finds it as before itself."""
    current = None if now is None else now.sha256
    if current == entry["before_sha256"]:
        return f"{entry['path']} already as before this step"
    if current == entry["after_sha256"]:
        return None
    for step_id, e in earlier:
        if current == e.get("before_sha256") and (now is None or (
                e.get("mode") == f"{now.mode:o}" and e.get("owner") == f"{now.uid}:{now.gid}")):
            return (f"{entry['path']} already as before step {step_id}, earlier in this run (undone further than this "
                    "step: by a rollback that was cut short, or by hand)")
    return None


def restore_file(transport: Transport, entry: Mapping[str, Any], *, force: bool = False,
                 earlier: Sequence[tuple[str, Mapping[str, Any]]] = ()) -> str:
    """Put a file back as the journal entry says it was. A file someone changed after the run is left alone, and
    the refusal shows how it differs from the before-image; force (after that) overwrites it. A file already undone
    (undone(), earlier: the earlier steps that wrote it too) is left as it is."""
    path = entry["path"]
    now = transport.read(path)
    current = None if now is None else now.sha256
    already = undone(now, entry, earlier)
    if already is not None:
        return already
    changed = current != entry["after_sha256"]
    if changed and not force:
        raise ConflictError(
            f"{transport.name}:{path} changed after the run (sha256 {current}); refusing to overwrite it. "
            f"How it differs from the before-image:\n{_difference(transport, entry)}",
            hint=f"keep it: `remediate rollback --skip STEP`; overwrite it with the before-image: `remediate rollback "
                 f"--force`; or compare with the backup {entry.get('backup')} and restore by hand",
        )
    if not entry["existed"]:
        try:  # only the file as just checked: an edit saved meanwhile is refused, never removed
            transport.remove(path, expect=None if now is None else now.identity)
        except ConflictError:
            raise _meanwhile(transport, path, "remove") from None
        return f"removed {path} (it did not exist before the run)"
    backup = transport.read(entry["backup"])
    if backup is None or backup.sha256 != entry["before_sha256"]:
        raise ConflictError(f"{transport.name}: backup {entry['backup']} of {path} is missing or altered; not restoring from it")
    # --force keeps the change it overwrites, beside the before-image (a new name: never over another file)
    kept = f"{entry['backup']}.replaced-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(3)}" \
        if changed and now is not None else None
    try:  # only over the file as just checked: an edit saved meanwhile is refused, never overwritten
        transport.write(path, backup.content, mode=int(entry["mode"], 8), owner=entry["owner"],
                        expect="absent" if now is None else now.identity, backup=kept)
    except ConflictError:
        raise _meanwhile(transport, path, "overwrite") from None
    forced = f" (overwrote a later change, --force; that change is kept as {kept})" if kept else \
        (" (it was gone, --force)" if changed else "")
    return f"restored {path} from {entry['backup']} (sha256 {entry['before_sha256'][:12]}){forced}"


def _meanwhile(transport: Transport, path: str, doing: str) -> ConflictError:
    """The refusal of a restore whose file changed between its check and its write (or removal)."""
    return ConflictError(f"{transport.name}:{path} changed while the rollback ran; refusing to {doing} it",
                         hint="see what changed, then run the rollback again")


def _difference(transport: Transport, entry: Mapping[str, Any]) -> str:
    """A unified diff from the current file to the before-image (what --force would do), or why there is none."""
    now = transport.read(entry["path"])
    before = transport.read(entry["backup"]) if entry.get("backup") else None
    change = FileChange(entry["path"], transport.name, None if now is None else now.content,
                        b"" if before is None else before.content)
    return change.diff() or "(no textual difference)"


@register
class FileContent(FileEdit):
    """Make a file hold exactly the given text."""

    kind = "file"
    params = {
        **FileEdit.params,
        "content": Param(str, required=True, help="the text the file must hold"),
        "mode": Param(str, help="octal mode for a new file, e.g. '0644'"),
    }

    def validate(self) -> None:
        mode = self.p["mode"]
        if mode is not None:
            try:
                int(mode, 8)
            except ValueError:
                raise InputError(f"{self.spec.where}: step {self.id!r}: mode must be octal like '0644', not {mode!r}") from None

    def new_mode(self) -> int | None:
        return None if self.p["mode"] is None else int(self.p["mode"], 8)

    def edit(self, ctx: Context, current: FileState | None) -> tuple[bytes | None, str]:
        wanted = str(self.p["content"]).encode()
        if current is not None and current.content == wanted:
            return None, f"{self.path} already holds the wanted content (sha256 {sha256(wanted)[:12]})"
        return wanted, f"{'create' if current is None else 'rewrite'} {self.path}"
