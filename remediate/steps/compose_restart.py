"""Re-create a compose project so its container runs what the file says, then wait until it answers SMTP."""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING, Any, Final, Mapping

from .. import compose, resolve
from ..errors import InputError, StepError
from ..plan import Plan
from ..probes.containers import compose_command, container_name, env_list, image_env, image_present, inspect, logs, postconf
from ..probes.dialogue import talk
from ..probes.listen import Listener, smtp_listener
from ..probes.waiting import NotYet, wait
from ..transport import Transport
from . import Param, Step, register

if TYPE_CHECKING:
    from ..context import Context

#: A rollback has restored the bytes and re-created the container; it does not sit out a full readiness wait.
ROLLBACK_WAIT: Final = 15
# A probe that answers like this is worth asking again; anything else (unreachable, no tool to probe with) is not.
TRANSIENT: Final = frozenset({"refused", "timeout", "broken", "answered"})


@register
class ComposeRestart(Step):
    """Validate, then `down` and `up -d` a compose project so the container runs what the file says."""

    kind = "compose-restart"
    reconciler = True
    params = {
        "dir": Param(str, required=True, help="the compose project's folder"),
        "file": Param(str, default="docker-compose.yml"),
        "service": Param(str, required=True),
        "container": Param(str, required=True),
        "smtp_address": Param((str, type(None)), default="",
                              help="where the host reaches the SMTP listener (empty: inferred from the compose service)"),
        "smtp_port": Param(int, default=25),
        "timeout": Param(int, default=90, help="seconds to wait for the container to answer"),
    }

    def validate(self) -> None:
        container_name(self.p["container"], f"{self.spec.where}: step {self.id!r}: container")
        if not 0 < self.p["smtp_port"] < 65536:
            raise InputError(f"{self.spec.where}: step {self.id!r}: smtp_port must be 1 to 65535, not {self.p['smtp_port']}")

    @property
    def path(self) -> str:
        return posixpath.join(self.p["dir"], self.p["file"])

    def _base(self, transport: Transport) -> list[str]:
        return [*compose_command(transport), "--project-directory", self.p["dir"], "-f", self.path]

    def _service(self, reader: resolve.Reader, text: str) -> tuple[dict[str, Any], dict[str, str | None]]:
        """The service's node and its environment as compose resolves it (env_file, .env, ${VAR})."""
        env = resolve.read(reader, self.path, self.p["service"], text)
        return env.node, env.resolved()

    def listener(self, transport: Transport, reader: resolve.Reader, text: str) -> Listener:
        """Where to probe Postfix once the file says `text`: inferred from the service, or smtp_address."""
        node, env = self._service(reader, text)

        def ask() -> str | None:
            seen = postconf(transport, self.p["container"], ["inet_interfaces"])
            return seen.get("inet_interfaces") if seen else None

        return smtp_listener(node, env, port=self.p["smtp_port"], override=self.p["smtp_address"] or "", ask=ask)

    def check(self, ctx: Context) -> Plan:
        transport = ctx.transport(self.target)
        current = ctx.read(self.target, self.path)
        if current is None:
            raise InputError(f"{ctx.target_name(self.target)}:{self.path} does not exist", hint="check compose_dir")
        text = current.content.decode("utf-8", "replace")
        _, desired = self._service(lambda path: ctx.read(self.target, path), text)
        base = " ".join(self._base(transport))
        why = self._drift(transport, desired)
        if why is None:
            return self.plan(f"{self.p['container']} already runs with the environment in {self.path}")
        listener = self.listener(transport, lambda path: ctx.read(self.target, path), text)
        return self.plan(f"{why}; then wait for SMTP on {listener}",
                         commands=(f"{base} config -q", f"{base} down", f"{base} up -d"),
                         data={"listener": [listener.address, listener.port, listener.why]})

    def _drift(self, transport: Transport, desired: Mapping[str, str | None]) -> str | None:
        facts = inspect(transport, self.p["container"])
        if facts is None:
            return f"{self.p['container']} does not exist"
        if not facts["State"]["Running"]:
            return f"{self.p['container']} is not running ({facts['State']['Status']})"
        running = env_list(facts["Config"]["Env"])
        baked = image_env(transport, facts["Image"])
        for key, value in desired.items():
            if value is not None and "$" not in value and running.get(key) != value:
                return f"{self.p['container']} runs with {key}={running.get(key, '(unset)')}; the file says {key}={value}"
        stale = [k for k in running if k not in desired and k not in baked]
        if stale:
            return f"{self.p['container']} still runs with {stale[0]}={running[stale[0]]}, which the file no longer sets"
        return None

    def apply(self, ctx: Context, plan: Plan) -> None:
        state = ctx.read(self.target, self.path)  # as the steps before this one left it
        self._converge(ctx, state.content.decode("utf-8", "replace") if state else "")

    def _converge(self, ctx: Context, text: str) -> None:
        """Refuse before `down` unless `up` can succeed without the network; then down and up -d."""
        transport = ctx.transport(self.target)
        base = self._base(transport)
        valid = transport.run([*base, "config", "-q"])
        if not valid.ok:
            raise StepError(f"{self.path} is not a valid compose file: {valid.output.strip()[-400:]}")
        self._image_present(transport, text)
        ctx.record(self.id, compose=base, down_started=True)
        for action in (["down"], ["up", "-d"]):
            result = transport.run([*base, *action], timeout=300)
            if not result.ok:
                raise StepError(f"`{' '.join(action)}` failed in {self.p['dir']}: {result.output.strip()[-400:]}")

    def _image_present(self, transport: Transport, text: str) -> None:
        node = compose.service_node(compose.parse(text, self.path), self.p["service"], self.path)
        image = node.get("image")
        if image and not image_present(transport, str(image)):
            raise StepError(f"image {image} of service {self.p['service']!r} is not on {transport.name}; `up` would have "
                            "to pull it, so the running container was left alone",
                            hint="pull or load the image first, or fix the image tag")

    def verify(self, ctx: Context, plan: Plan) -> str:
        address, port, why = plan.data["listener"]
        return self._ready(ctx, Listener(address, port, why), self.p["timeout"])

    def _ready(self, ctx: Context, listener: Listener, seconds: float) -> str:
        """Wait until the container runs and its SMTP listener greets with 220; explain a timeout in full."""
        transport = ctx.transport(self.target)
        container = self.p["container"]

        def answers() -> str:
            facts = inspect(transport, container)
            if facts is not None and (facts["State"]["Restarting"] or facts["State"]["Status"] in ("exited", "dead")):
                tail = " | ".join(logs(transport, container)[-4:])
                raise StepError(f"{container} is {facts['State']['Status']} (exit code {facts['State']['ExitCode']}); "
                                f"its log ends: {tail or '(empty)'}")
            if facts is None or not facts["State"]["Running"]:
                raise NotYet(f"{container} is {'missing' if facts is None else facts['State']['Status']}")
            exchange = talk(transport, listener.address, listener.port, ("QUIT",))
            if exchange.status == "answered" and exchange.greeting.startswith("220"):
                return (f"{container} running since {facts['State']['StartedAt'][:19]}Z; "
                        f"{listener.address}:{listener.port} says {exchange.greeting.strip()[:60]} ({exchange.route})")
            if exchange.status not in TRANSIENT:
                raise StepError(f"cannot probe SMTP on {listener}: {exchange.describe()}",
                                hint="set smtp_address to an address the host reaches Postfix on")
            raise NotYet(exchange.describe())

        def explain() -> str:
            tail = [line for line in logs(transport, container) if line.strip()][-1:]
            return (f"the address came from {listener.why}; "
                    f"{container}'s last log line: {tail[0].strip()[:200] if tail else '(empty)'}")

        return wait(seconds, f"{container} did not come up and answer SMTP on {listener.address}:{listener.port}", answers,
                    explain=explain, hint="if Postfix listens elsewhere, set smtp_address; if it is slow to start, "
                                          "raise restart_timeout")

    def rollback(self, ctx: Context, entry: Mapping[str, Any]) -> str:
        if not entry.get("down_started"):
            return f"{self.p['container']} was never stopped; nothing to undo"
        transport = ctx.transport(self.target)
        state = transport.read(self.path)  # the restored file, not the plan's
        text = state.content.decode("utf-8", "replace") if state else ""
        self._converge(ctx, text)
        restored = f"re-created {self.p['container']} from the restored {self.path} (fresh config volume)"
        try:
            listener = self.listener(transport, transport.read, text)
            ready = self._ready(ctx, listener, min(ROLLBACK_WAIT, self.p["timeout"]))
        except StepError as e:  # the original answered (or not) before the run too: report, do not fail
            return f"{restored}; readiness not confirmed: {e.message}"
        return f"{restored}; {ready}"
