"""What a command is told (inventory, hosts, playbook, -e, step selection, rollout), and the inputs read from it:
every input error surfaces here, before any connection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from remediate.engine import fleet, planfile
from remediate.errors import InputError
from remediate.inputs import inventory as inventory_mod
from remediate.inputs import playbook as playbook_mod
from remediate.inputs.inventory import Host
from remediate.kinds import did_you_mean
from remediate.records import record


@record(frozen=True)
class Options:
    """What every command is told: where the inventory is, which hosts, which playbook."""

    inventory: Path
    hosts: tuple[str, ...]
    playbook: str | None = None
    extra: tuple[str, ...] = ()
    accept_new_host_keys: bool = False
    break_lock: bool = False
    verbose: int = 0  # 1: every remote command with its exit code and time; 2: and what it printed
    steps: tuple[str, ...] = ()  # only these steps (--steps)
    skip_steps: tuple[str, ...] = ()  # not these (--skip-steps)
    start_at: str | None = None  # from this one on (--start-at-step)
    rollout: fleet.Rollout = fleet.Rollout()  # --forks, --serial, --max-fail-percent, --rollback-fleet-on-abort
    serial_text: str | None = None  # --serial as given, for the events
    #: Refuse an -e variable that nothing reads (the command line does, unless --allow-unused-vars).
    refuse_unused_vars: bool = False

    def selection(self) -> dict[str, Any]:
        """The step selection, as a saved plan keeps it."""
        return {"steps": list(self.steps), "skip_steps": list(self.skip_steps), "start_at": self.start_at}

    def saved_rollout(self) -> dict[str, Any]:
        """The rollout's batches and failure budget, as a saved plan keeps them (not --forks: how many hosts at a
        time is the applying machine's to say, as Terraform's -parallelism)."""
        serial = self.serial_text or ",".join(f"{n}{'%' if share else ''}" for n, share in self.rollout.serial) or None
        return {"serial": serial, "max_fail_percent": self.rollout.max_fail_percent,
                "rollback_fleet_on_abort": self.rollout.rollback_fleet_on_abort}


def load(opts: Options) -> tuple[inventory_mod.Inventory, list[Host], playbook_mod.Playbook, dict[str, Any]]:
    """Parse the inventory, the hosts, the playbook and -e: every input error surfaces here, before any connection."""
    inventory = inventory_mod.load(opts.inventory)
    hosts = inventory.select(opts.hosts)
    book = playbook_mod.load(playbook_mod.locate(opts.playbook))
    extra = playbook_mod.parse_extra(opts.extra)
    if opts.refuse_unused_vars:
        refuse_unused(extra, [book], hosts)
    return inventory, hosts, book, extra


def refuse_unused(extra: dict[str, Any], books: list[playbook_mod.Playbook], hosts: list[Host]) -> None:
    """An -e variable must be one a playbook (its vars:, steps or checks), the hosts' inventory or remediate itself
    reads: `-e lmtp_prot=2526` is a typo, and planning with the default port would hide it."""
    used = {*playbook_mod.READ_BY_REMEDIATE, *playbook_mod.referenced(extra)}  # -e a='{{ b }}' reads b
    for book in books:
        used |= book.names_used()
    for host in hosts:
        used |= {*host.vars, *playbook_mod.referenced(host.vars)}
    unused = [name for name in extra if name not in used]
    if unused:
        named = " or ".join(b.path for b in books) if len(books) < 4 else f"the {len(books)} playbooks"
        raise InputError(f"-e {unused[0]}: nothing reads this variable: no step, check or variable of {named}, nor "
                         "the inventory", hint=f"{did_you_mean(unused[0], used)}if it is meant (a variable that "
                                               "only some hosts or another playbook use), pass --allow-unused-vars")


def skipped_steps(opts: Options, ids: list[str]) -> frozenset[str]:
    """The steps --steps, --skip-steps and --start-at-step leave out; unknown names are refused."""
    named = [*opts.steps, *opts.skip_steps, *([opts.start_at] if opts.start_at else [])]
    unknown = [n for n in named if n not in ids]
    if unknown:
        raise InputError(f"this playbook has no step {unknown[0]!r}", hint=f"its steps: {', '.join(ids)}")
    skipped = set(opts.skip_steps)
    if opts.steps:
        skipped |= set(ids) - set(opts.steps)
    if opts.start_at:
        skipped |= set(ids[:ids.index(opts.start_at)])
    return frozenset(skipped)


def saved_rollout(doc: dict[str, Any]) -> tuple[fleet.Rollout, str | None]:
    """A saved plan's rollout and its --serial text; the default (one batch, the first failure stops it) for a plan
    saved before plans kept one (doc has no "rollout": serve's stored plans, older files). InputError when it is
    not one remediate writes."""
    saved = doc.get("rollout", {})
    serial, budget = (saved.get("serial"), saved.get("max_fail_percent")) if isinstance(saved, dict) else (0, "")
    fleet_back = saved.get("rollback_fleet_on_abort", False) if isinstance(saved, dict) else None
    if not (isinstance(serial, str) or serial is None) or not isinstance(fleet_back, bool) \
            or not (budget is None or (isinstance(budget, (int, float)) and not isinstance(budget, bool))):
        raise InputError(f"the saved plan's rollout is not one remediate writes: {json.dumps(saved)[:200]}",
                         hint="make and review a new plan with `remediate plan --out FILE`")
    try:
        return fleet.Rollout(serial=fleet.parse_serial(serial), max_fail_percent=fleet.percent(budget),
                             rollback_fleet_on_abort=fleet_back), serial
    except InputError as e:
        raise InputError(f"the saved plan's rollout: {e.message}", hint="make and review a new plan with "
                                                                        "`remediate plan --out FILE`") from None


def saved_options(doc: dict[str, Any], inventory: Path | None, extra: tuple[str, ...]) -> Options:
    """The options a saved plan was made with; -e may give masked secrets again, -i may name the inventory anew."""
    given = playbook_mod.parse_extra(extra)
    values = planfile.extra(doc, given)
    selection = doc.get("selection") or {}
    rollout, serial = saved_rollout(doc)
    return Options(inventory=inventory or Path(doc["inventory"]), hosts=tuple(doc["hosts"]),
                   playbook=planfile.playbook_path(doc), extra=(json.dumps(values),) if values else (),
                   steps=tuple(selection.get("steps") or ()), skip_steps=tuple(selection.get("skip_steps") or ()),
                   start_at=selection.get("start_at"), rollout=rollout, serial_text=serial)
