"""Steps that act on containers: re-create a compose project, read Postfix's effective config, send a test mail."""

from __future__ import annotations

import json
import posixpath
import re
import socket
import uuid
from typing import TYPE_CHECKING, Any, Final, Mapping

import paramiko
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from .. import compose
from ..errors import CommandError, InputError, StepError
from ..plan import Plan
from ..smtp import read_reply
from ..transport import Transport
from . import Param, Step, register

if TYPE_CHECKING:
    from ..context import Context

LOG_TAIL: Final = "2000"
STATUS: Final = re.compile(r"status=(?P<status>\w+)")
BANNER_TIMEOUT: Final = 5.0
# One round trip, and no Python start-up for v1: v2 if the docker CLI has compose, else v1 if installed.
COMPOSE_PROBE: Final = ("if docker compose version >/dev/null 2>&1; then echo v2; "
                        "elif command -v docker-compose >/dev/null 2>&1; then echo v1; fi")


class NotYet(Exception):
    """What a wait is waiting for has not happened yet."""


def wait(seconds: float, what: str, probe: Any) -> Any:
    """Call probe until it returns without NotYet, for at most `seconds`; say what never came."""
    try:
        for attempt in Retrying(stop=stop_after_delay(seconds), wait=wait_fixed(0.5),
                                retry=retry_if_exception_type(NotYet), reraise=True):
            with attempt:
                return probe()
    except NotYet as e:
        raise StepError(f"{what} within {seconds:g} s: {e}") from None
    raise AssertionError("unreachable")


def compose_command(ctx: Context, target: str) -> list[str]:
    """`docker compose` (v2) when the host has it, else `docker-compose` (v1); asked once per host."""
    key = f"compose_command:{ctx.target_name(target)}"
    if key not in ctx.facts:
        found = ctx.transport(target).shell(COMPOSE_PROBE, display="which compose")
        if found.stdout.strip() == "v2":
            ctx.facts[key] = ["docker", "compose"]
        elif found.stdout.strip() == "v1":
            ctx.facts[key] = ["docker-compose"]
        else:
            raise StepError(f"{ctx.target_name(target)} has neither `docker compose` nor `docker-compose`",
                            hint="install the compose plugin or docker-compose on the host")
    return list(ctx.facts[key])


def inspect(transport: Transport, container: str) -> dict[str, Any] | None:
    """docker inspect of a container, or None when there is no such container."""
    result = transport.run(["docker", "inspect", "--type", "container", container])
    if not result.ok:
        if "No such" in result.output:
            return None
        raise CommandError(f"{transport.name}: docker inspect {container} failed: {result.output.strip()}")
    return json.loads(result.stdout)[0]


def logs(transport: Transport, container: str) -> list[str]:
    """The container's recent log, stdout and stderr both (Dovecot logs to stderr)."""
    result = transport.run(["docker", "logs", "--tail", LOG_TAIL, container])
    if not result.ok:
        raise CommandError(f"{transport.name}: docker logs {container} failed: {result.output.strip()}")
    return result.output.splitlines()


def _env_list(items: list[str] | None) -> dict[str, str]:
    return dict(item.partition("=")[::2] for item in items or [])


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
        "smtp_address": Param(str, default="127.0.0.1", help="where the host reaches the SMTP listener"),
        "smtp_port": Param(int, default=25),
        "timeout": Param(int, default=90, help="seconds to wait for the container to answer"),
    }

    @property
    def path(self) -> str:
        return posixpath.join(self.p["dir"], self.p["file"])

    def _base(self, ctx: Context) -> list[str]:
        return [*compose_command(ctx, self.target), "--project-directory", self.p["dir"], "-f", self.path]

    def check(self, ctx: Context) -> Plan:
        transport = ctx.transport(self.target)
        current = ctx.read(self.target, self.path)
        if current is None:
            raise InputError(f"{ctx.target_name(self.target)}:{self.path} does not exist", hint="check compose_dir")
        desired = compose.service_env(current.content.decode("utf-8", "replace"), self.p["service"], self.path)
        base = " ".join(self._base(ctx))
        why = self._drift(transport, desired)
        if why is None:
            return self.plan(f"{self.p['container']} already runs with the environment in {self.path}")
        return self.plan(why, commands=(f"{base} config -q", f"{base} down", f"{base} up -d"))

    def _drift(self, transport: Transport, desired: Mapping[str, str | None]) -> str | None:
        facts = inspect(transport, self.p["container"])
        if facts is None:
            return f"{self.p['container']} does not exist"
        if not facts["State"]["Running"]:
            return f"{self.p['container']} is not running ({facts['State']['Status']})"
        running = _env_list(facts["Config"]["Env"])
        image = transport.run(["docker", "image", "inspect", facts["Image"]])
        baked = _env_list(json.loads(image.stdout)[0]["Config"]["Env"]) if image.ok else {}
        for key, value in desired.items():
            if value is not None and "$" not in value and running.get(key) != value:
                return f"{self.p['container']} runs with {key}={running.get(key, '(unset)')}; the file says {key}={value}"
        stale = [k for k in running if k not in desired and k not in baked]
        if stale:
            return f"{self.p['container']} still runs with {stale[0]}={running[stale[0]]}, which the file no longer sets"
        return None

    def apply(self, ctx: Context, plan: Plan) -> None:
        self._converge(ctx)

    def _converge(self, ctx: Context) -> None:
        """Refuse before `down` unless `up` can succeed without the network; then down and up -d."""
        transport = ctx.transport(self.target)
        base = self._base(ctx)
        valid = transport.run([*base, "config", "-q"])
        if not valid.ok:
            raise StepError(f"{self.path} is not a valid compose file: {valid.output.strip()[-400:]}")
        self._image_present(ctx, transport)
        ctx.record(self.id, compose=base, down_started=True)
        for action in (["down"], ["up", "-d"]):
            result = transport.run([*base, *action], timeout=300)
            if not result.ok:
                raise StepError(f"`{' '.join(action)}` failed in {self.p['dir']}: {result.output.strip()[-400:]}")

    def _image_present(self, ctx: Context, transport: Transport) -> None:
        state = transport.read(self.path)
        doc = compose.parse(state.content.decode("utf-8", "replace") if state else "", self.path)
        image = (doc.get("services") or {}).get(self.p["service"], {}).get("image")
        if image and not transport.run(["docker", "image", "inspect", "--format", "{{.Id}}", str(image)]).ok:
            raise StepError(f"image {image} of service {self.p['service']!r} is not on {transport.name}; `up` would have "
                            "to pull it, so the running container was left alone",
                            hint="pull or load the image first, or fix the image tag")

    def verify(self, ctx: Context, plan: Plan) -> str:
        return self._ready(ctx)

    def _ready(self, ctx: Context, *, banner_required: bool = True) -> str:
        transport = ctx.transport(self.target)
        container, address, port = self.p["container"], self.p["smtp_address"], self.p["smtp_port"]

        def alive() -> dict[str, Any]:
            facts = inspect(transport, container)
            if facts is not None and (facts["State"]["Restarting"] or facts["State"]["Status"] in ("exited", "dead")):
                tail = " | ".join(logs(transport, container)[-4:])
                raise StepError(f"{container} is {facts['State']['Status']} (exit code {facts['State']['ExitCode']}); "
                                f"its log ends: {tail or '(empty)'}")
            if facts is None or not facts["State"]["Running"]:
                raise NotYet(f"{container} is {'missing' if facts is None else facts['State']['Status']}")
            return facts

        def running() -> str:
            return f"{container} running since {alive()['State']['StartedAt'][:19]}Z"

        def answers() -> str:
            alive()
            banner = smtp_banner(transport, address, port)
            if not banner.startswith("220"):
                raise NotYet(f"{address}:{port} answered {banner!r}")
            return f"{address}:{port} says {banner.strip()[:60]}"

        what = f"{container} did not come up and answer SMTP on {address}:{port}"
        state = wait(self.p["timeout"], what, running)
        try:
            return f"{state}; {wait(self.p['timeout'], what, answers)}"
        except StepError as e:
            if banner_required:
                raise
            return f"{state}; warning: {e}"

    def rollback(self, ctx: Context, entry: Mapping[str, Any]) -> str:
        if not entry.get("down_started"):
            return f"{self.p['container']} was never stopped; nothing to undo"
        self._converge(ctx)
        ready = self._ready(ctx, banner_required=False)  # the original answered (or not) before the run too
        return f"re-created {self.p['container']} from the restored {self.path} (fresh config volume); {ready}"


def smtp_banner(transport: Transport, address: str, port: int) -> str:
    """The first line a TCP listener sends, reached from the host's side; NotYet when nothing answers."""
    try:
        stream = transport.open_tcp(address, port, BANNER_TIMEOUT)
    except (OSError, paramiko.SSHException, paramiko.ChannelException) as e:
        raise NotYet(f"{address}:{port}: {e}") from None
    try:
        stream.settimeout(BANNER_TIMEOUT)
        greeting = read_reply(stream)
        stream.sendall(b"QUIT\r\n")
        return greeting.splitlines()[0] if greeting else ""
    except (OSError, socket.timeout, paramiko.SSHException) as e:
        raise NotYet(f"{address}:{port}: {e or type(e).__name__}") from None
    finally:
        stream.close()


@register
class PostfixConfig(Step):
    """Postfix inside the container runs with what the compose file says, per boky/postfix's contract."""

    kind = "postfix-config"
    params = {
        "container": Param(str, required=True),
        "compose_path": Param(str, required=True),
        "service": Param(str, required=True),
        "keys": Param(list, default=["relayhost", "relay_transport", "relay_domains"]),
        "timeout": Param(int, default=60),
    }

    def _expected(self, ctx: Context, defaults: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
        current = ctx.read(self.target, self.p["compose_path"])
        if current is None:
            raise InputError(f"{self.p['compose_path']} does not exist")
        env = compose.service_env(current.content.decode("utf-8", "replace"), self.p["service"], self.p["compose_path"])
        expected, log_lines = {}, []
        for key in self.p["keys"]:
            custom = env.get(f"POSTFIX_{key}")
            if custom:
                expected[key] = custom
                log_lines.append(f"Applying custom postfix setting: {key}={custom}")
            elif key == "relayhost" and env.get("RELAYHOST"):
                expected[key] = str(env["RELAYHOST"])
            else:
                expected[key] = defaults.get(key, "")
        return expected, log_lines

    def _observe(self, ctx: Context) -> tuple[dict[str, str], dict[str, str]]:
        transport = ctx.transport(self.target)
        keys = [str(k) for k in self.p["keys"]]
        result = transport.run(["docker", "exec", self.p["container"], "sh", "-c",
                                'postconf -h "$@" && echo --- && postconf -dh "$@"', "sh", *keys])
        if not result.ok:
            raise NotYet(f"postconf in {self.p['container']} failed: {result.output.strip()[-200:]}")
        now, _, default = result.stdout.partition("---\n")
        return dict(zip(keys, now.splitlines())), dict(zip(keys, default.splitlines()))

    def _differences(self, ctx: Context) -> tuple[list[str], dict[str, str]]:
        """What differs from the compose file (empty when nothing does), and the values seen."""
        current, defaults = self._observe(ctx)
        expected, log_lines = self._expected(ctx, defaults)
        problems = [f"{k} is {current.get(k)!r}, expected {v!r}" for k, v in expected.items() if current.get(k) != v]
        if not problems:
            log = logs(ctx.transport(self.target), self.p["container"])
            problems = [f"no '{line}' in the log" for line in log_lines if not any(line in entry for entry in log)]
        return problems, current

    def check(self, ctx: Context) -> Plan:
        checks = (f"postconf -h {' '.join(self.p['keys'])} in {self.p['container']} matches {self.p['compose_path']}",)
        earlier = ctx.changes_before()
        if earlier:
            return self.plan(f"confirm after {', '.join(earlier)}", checks=checks)
        try:
            problems, _ = self._differences(ctx)
        except NotYet as e:
            return self.plan(str(e), checks=checks)
        if problems:
            return self.plan("the running config differs from the compose file: " + "; ".join(problems), checks=checks)
        return self.plan(f"{', '.join(self.p['keys'])} in {self.p['container']} match {self.p['compose_path']}")

    def apply(self, ctx: Context, plan: Plan) -> None:
        """Nothing to change: this step only verifies."""

    def verify(self, ctx: Context, plan: Plan) -> str:
        def probe() -> str:
            problems, current = self._differences(ctx)
            if problems:
                raise NotYet("; ".join(problems))
            return ", ".join(f"{k}={v!r}" for k, v in current.items())

        return wait(self.p["timeout"], f"the effective Postfix config in {self.p['container']} did not match", probe)


@register
class TestMail(Step):
    """Send a tagged mail through Postfix and follow it to Dovecot's 'saved mail'."""

    kind = "test-mail"
    params = {
        "container": Param(str, required=True),
        "sender": Param(str, required=True),
        "recipient": Param(str, required=True),
        "mailbox_host": Param(str, required=True, help="inventory name of the host running Dovecot"),
        "dovecot_container": Param(str, required=True),
        "timeout": Param(int, default=60),
    }

    def hosts(self) -> set[str]:
        return super().hosts() | {self.p["mailbox_host"]}

    def check(self, ctx: Context) -> Plan:
        checks = (f"send a tagged mail {self.p['sender']} -> {self.p['recipient']} in {self.p['container']}, "
                  "follow it to 'status=sent ... Saved'",
                  f"find Dovecot's 'saved mail' for it in {self.p['dovecot_container']} on {self.p['mailbox_host']}")
        earlier = ctx.changes_before()
        if earlier:
            return self.plan(f"prove delivery after {', '.join(earlier)}", checks=checks)
        proof = self._delivered_before(ctx)
        if proof:
            return self.plan(f"delivery over LMTP already proven since {self.p['container']} started: {proof}")
        return self.plan("no LMTP delivery seen since the container started", checks=checks)

    def _delivered_before(self, ctx: Context) -> str | None:
        if inspect(ctx.transport(self.target), self.p["container"]) is None:
            return None
        relay = ctx.facts.get("lmtp_address")
        for line in reversed(logs(ctx.transport(self.target), self.p["container"])):
            if "status=sent (250 2.0.0" in line and line.rstrip().endswith("Saved)") \
                    and f"to=<{self.p['recipient']}>" in line \
                    and (relay is None or f"[{relay[0]}]:{relay[1]}," in line):
                return line.split(": ", 1)[-1][:160]
        return None

    def apply(self, ctx: Context, plan: Plan) -> None:
        """Nothing to change: the test mail is sent by verify."""

    def verify(self, ctx: Context, plan: Plan) -> str:
        transport = ctx.transport(self.target)
        tag = f"remediate-{ctx.run_id}-{uuid.uuid4().hex[:8]}@remediate.invalid"
        message = (f"From: <{self.p['sender']}>\nTo: <{self.p['recipient']}>\nSubject: remediate test {ctx.run_id}\n"
                   f"Message-ID: <{tag}>\n\nTest mail sent by remediate run {ctx.run_id}.\n").encode()
        sent = transport.run(["docker", "exec", "-i", self.p["container"], "sendmail", "-f", self.p["sender"],
                              self.p["recipient"]], stdin=message)
        if not sent.ok:
            raise StepError(f"sendmail in {self.p['container']} failed: {sent.output.strip()[-300:]}")
        ctx.record(self.id, message_id=tag)

        def queue_id() -> str:
            for line in logs(transport, self.p["container"]):
                if f"message-id=<{tag}>" in line:
                    return line.split("]: ", 1)[1].split(":", 1)[0]
            raise NotYet(f"no 'message-id=<{tag}>' in the log of {self.p['container']}")

        qid = wait(self.p["timeout"], "the test mail never reached Postfix's queue", queue_id)

        def status() -> str:
            for line in logs(transport, self.p["container"]):
                if f"{qid}: to=<{self.p['recipient']}>" in line and "status=" in line:
                    found = STATUS.search(line)
                    if found and found["status"] == "sent" and "Saved" in line:
                        return line
                    raise StepError(f"test mail {qid} was not delivered: {line.split(': ', 1)[-1]}")
            raise NotYet(f"no 'status=sent ... Saved' for queue id {qid}")

        delivered = wait(self.p["timeout"], "the test mail was not delivered", status)
        dovecot = ctx.transport(self.p["mailbox_host"])

        def saved() -> str:
            for line in logs(dovecot, self.p["dovecot_container"]):
                if f"msgid=<{tag}>" in line and "saved mail to" in line:
                    return line
            raise NotYet(f"no 'saved mail' for <{tag}> in {self.p['dovecot_container']} on {self.p['mailbox_host']}")

        stored = wait(self.p["timeout"], "Dovecot never logged the test mail as saved", saved)
        ctx.record(self.id, queue_id=qid, postfix=delivered, dovecot=stored)
        return f"queue id {qid}: {delivered[delivered.index('status='):]}; {self.p['mailbox_host']}: {stored.split(': ')[-1]}"
