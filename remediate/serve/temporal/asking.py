"""A run asked for by hand on Temporal (POST /incidents): checked as the embedded backend checks it (manual.py: the
rule and the host known, serve not paused, the run limits) and started as an alert's incident workflow is, with the
person who asked recorded: they may not approve it (approvals.py)."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from remediate.errors import RemediateError
from remediate.inputs import inventory as inventory_mod
from remediate.serve.identity import Person
from remediate.serve.models import State
from remediate.serve.refusals import Refused
from remediate.serve.rules import Rule
from remediate.serve.store import iso
from remediate.serve.temporal import shared
from remediate.serve.temporal.routing import Router
from remediate.serve.temporal.shared import Opened

if TYPE_CHECKING:
    from remediate.serve.temporal.backend import TemporalBackend


async def request(backend: TemporalBackend, rule_name: str, host: str, person: Person) -> dict[str, Any]:
    """The incident's first record, once its workflow is started; Refused naming why it cannot be."""
    client = await backend._ready()
    rule = backend.rules.named(rule_name)
    if rule is None:
        raise Refused(f"no rule {rule_name!r} in {backend.rules.path}")
    async with backend._routing:  # counted by the run limits as an alert is, one at a time on this replica
        refusal = await asyncio.get_running_loop().run_in_executor(None, _refusal, backend.router, rule, host)
        if refusal is not None:
            raise Refused(refusal)
        now = time.time()
        fingerprint, starts_at = f"manual:{uuid.uuid4()}", iso(now)
        opened = Opened(shared.incident_number(fingerprint, starts_at), fingerprint, starts_at, None,
                        {rule.host_label: host}, host, rule.name, rule.playbook,
                        (State.PENDING if rule.approval == "required" else State.RUNNING).value, None,
                        f"requested by {person.said}: rule {rule.name!r}, playbook {Path(rule.playbook).stem} on "
                        f"{host}", rule.approval, rule.resolve_timeout, rule.on_unresolved, backend.timing,
                        rule.approvals, rule.approval_expires, person.name, verify_again=rule.verify_again,
                        chat=rule.chat is not None)  # no alert to silence or look at: only the webhook's resolved
        await backend._start(client, None, opened, "")
    return shared.first_record(opened, now)


def _refusal(router: Router, rule: Rule, host: str) -> str | None:
    """Why a run of `rule` on `host` is not started now (an unknown host, the pause, a run limit), or None."""
    try:
        hosts = inventory_mod.load(router.inventory).hosts
    except RemediateError as e:
        return f"the inventory cannot be read: {e.message}"
    if host not in hosts:
        return f"host {host!r} is not in {router.inventory}"
    if router.paused:
        return f"serve is paused ({router.paused_by()}): resume it before asking for a run"
    limited = router._limited(rule, host)
    return None if limited is None else str(limited[1])
