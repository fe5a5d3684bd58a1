"""The incident workflow's proof, as the embedded backend has it (alertmanager.py's silence loop, deadlines.py's two
sources of resolved): the silence made when the apply starts and followed after each step (expired when the fix fails
or waits for a person again, made to last until the deadline once applied, left to lapse once proven); and, while the
incident waits for resolved, a look at Alertmanager's API every `look_every` seconds (a durable timer, then the look
activity), resolved when one source says so and none contradicts it. Only what Opened asks: an incident started
before these existed (its Opened without them) takes the path it always took."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from remediate.serve.temporal import shared
    from remediate.serve.temporal.shared import Hush, Hushed, Looked, LookInput, Opened, Told

WAITED = "the alert was still firing at the deadline"
#: After the alert is gone but the verify says otherwise, the next look (and plan) this much later.
VERIFY_AGAIN = 60.0


class Proving:
    """The proof steps of IncidentWorkflow; the record and its moves are the workflow's."""

    opened: Opened | None
    record: dict[str, Any]
    rollback_by: str | None

    def _proof_init(self) -> None:
        self.hushed: str | None = None  # what was last done to the silence: made, until, lapse, expired
        self.webhook_checked = False  # the webhook's resolved was looked at (and did not end the incident)
        self.next_look = 0.0  # no look at the API before then
        self.last_look: Looked | None = None

    def _log(self, what: str, detail: str) -> None:
        raise NotImplementedError

    def _set(self, state: str, what: str, detail: str, **columns: Any) -> None:
        raise NotImplementedError

    def _retry(self, attempts: int) -> Any:
        raise NotImplementedError

    async def _unresolved(self) -> None:
        raise NotImplementedError

    def proving(self) -> bool:
        """Whether resolved is proven before it counts (Alertmanager looked at, or the playbook verified again)."""
        return self.opened is not None and (self.opened.look_every > 0 or self.opened.verify_again)

    @workflow.signal
    def note(self, what: str, detail: str) -> None:
        """A line for the audit log from a front end (a refused Slack click)."""
        self._log(what, detail)

    # --- the silence ---------------------------------------------------------------------------------------------

    async def _hush(self, action: str) -> None:
        assert self.opened is not None
        record = self.record
        ask = Hush(self.opened.number, action, dict(self.opened.labels), str(self.opened.rule), str(self.opened.host),
                   str(record["state"]), record.get("silence_id"), float(record.get("deadline") or 0))
        try:
            hushed: Hushed = await workflow.execute_activity(
                shared.SILENCE, ask, result_type=Hushed, start_to_close_timeout=timedelta(minutes=1),
                retry_policy=self._retry(3))
        except ActivityError as e:
            self._log("silence failed", f"{action}: {e.cause or e}")
            return
        for what, detail in hushed.log:
            self._log(what, detail)
        record["silence_id"] = hushed.silence_id
        self.hushed = action if hushed.silence_id is not None else None

    async def _silenced(self) -> None:
        """The apply starts: its silence made, unless it has one."""
        if self.opened is not None and self.opened.silence and self.record.get("silence_id") is None:
            await self._hush("make")

    async def _follow(self) -> None:
        """After each step: what the incident's state asks of its silence."""
        if self.opened is None or not self.opened.silence or self.record.get("silence_id") is None:
            return
        state = self.record["state"]
        if state in ("failed", "rolled_back", "pending") and self.hushed != "expire":
            await self._hush("expire")
        elif state == "waiting_resolved" and self.hushed == "make":
            await self._hush("until")
        elif state == "resolved" and self.hushed not in ("lapse", "expire"):
            await self._hush("lapse")

    # --- resolved, from Alertmanager's API and the verify --------------------------------------------------------

    def _heard(self) -> bool:
        return self.record["alert_resolved"] is not None and not self.webhook_checked

    async def _proof_wait(self) -> None:
        """One wait while proving: until the webhook's resolved, a rollback asked, the next look or the deadline."""
        assert self.opened is not None
        now, every = workflow.now().timestamp(), self.opened.look_every
        deadline = float(self.record["deadline"] or 0)
        wake = max(0.0, deadline - now)
        if every > 0:
            wake = min(wake, max(every, self.next_look - now))
        try:
            await workflow.wait_condition(lambda: self._heard() or self.rollback_by is not None,
                                          timeout=timedelta(seconds=wake))
        except TimeoutError:
            pass
        if self.rollback_by is not None:
            return  # the rollback update set it running: _step rolls it back
        if self._heard():
            self.webhook_checked = True
            await self._look(webhook=_stamp(float(self.record["alert_resolved"])))
        elif workflow.now().timestamp() >= deadline:
            await self._unresolved()
        elif every > 0 and workflow.now().timestamp() >= self.next_look:
            await self._look(webhook=None)

    async def _look(self, webhook: str | None) -> None:
        assert self.opened is not None
        opened = self.opened
        ask = LookInput(opened.number, str(opened.rule), str(opened.host), opened.fingerprint, dict(opened.labels),
                        opened.look_every > 0, opened.verify_again, webhook)
        try:
            looked: Looked = await workflow.execute_activity(
                shared.LOOK, ask, result_type=Looked, start_to_close_timeout=timedelta(minutes=10),
                retry_policy=self._retry(3))
        except ActivityError as e:
            looked = Looked("unknown", f"the look failed: {e.cause or e}", workflow.now().timestamp(), False)
        previous, self.last_look = self.last_look, looked
        self.next_look = workflow.now().timestamp() + opened.look_every
        if webhook is not None and looked.state == "firing":
            self._log("sources disagree", f"the webhook said resolved at {webhook}; Alertmanager's API: "
                                          f"{looked.said}. Waiting for them to agree, or the deadline")
        elif webhook is None and looked.state != "absent":
            if looked.state == "unknown" and (previous is None or previous.state != "unknown"):
                self._log("not counted", f"Alertmanager's API: {looked.said}")
        elif looked.verify is not None and not looked.verify.startswith("verified"):
            if "sources disagree" not in {h["what"] for h in self.record["history"]}:
                said = looked.said or "no look at Alertmanager's API"
                self._log("sources disagree", f"{said}; but the playbook's verify again: {looked.verify}. Waiting "
                                              "until the deadline (verified again each minute)")
            self.next_look = workflow.now().timestamp() + VERIFY_AGAIN
        else:
            self._resolved(looked, webhook)

    def _resolved(self, looked: Looked, webhook: str | None) -> None:
        """Resolved, with each source's word in the history and the evidence (the webhook's resolved, when one came
        before, though the API or the verify did not agree then)."""
        heard = self.record["alert_resolved"]
        webhook = webhook or (_stamp(float(heard)) if heard is not None else None)
        evidence = {"webhook": f"resolved at {webhook}" if webhook else None, "api": looked.said,
                    "verify": looked.verify}
        detail = (f"webhook: {evidence['webhook'] or 'no resolved came'}; Alertmanager's API: "
                  f"{evidence['api'] or 'not asked'}{f'; {looked.verify}' if looked.verify else ''}")
        self._set("resolved", "resolved", detail, evidence=evidence, reason=None,
                  alert_resolved=self.record["alert_resolved"] or looked.at)

    def waited(self) -> str:
        """WAITED, with the API's last word when it was asked."""
        said = self.last_look.said if self.last_look is not None else None
        return f"{WAITED} (Alertmanager's API: {said})" if said else WAITED

    def evidence(self) -> dict[str, Any]:
        """The evidence column for an incident that ends at its deadline: the API's last word, when asked."""
        said = self.last_look.said if self.last_look is not None else None
        return {"evidence": {"webhook": None, "api": said, "verify": None}} if said else {}

    # --- chat ----------------------------------------------------------------------------------------------------

    async def _post_chat(self) -> None:
        """The pending plan posted to the rule's chat (once planned); what became of it in the history."""
        if self.opened is None or not self.opened.chat:
            return
        try:
            said: list[list[str]] = await workflow.execute_activity(
                shared.CHAT, Told(self.opened.number, {}, self.record), result_type=list[list[str]],
                start_to_close_timeout=timedelta(minutes=2), retry_policy=self._retry(3))
        except ActivityError as e:
            said = [["chat post failed", str(e.cause or e)]]
        for what, detail in said:
            self._log(what, detail)


def _stamp(epoch: float) -> str:
    """alertmanager.stamp, inside the workflow's sandbox."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
