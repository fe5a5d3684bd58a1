"""Is a re-created container ready? One probe per kind of readiness, each answering once (waits are the caller's).

Each returns a line saying what proved it, raises NotYet for a transient state (refused, timed out, starting),
and StepError for a permanent one (the container exited, nothing to probe with, no healthcheck)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from remediate.errors import StepError
from remediate.probes.containers import inspect, logs
from remediate.probes.dialogue import talk
from remediate.probes.listen import Listener
from remediate.probes.waiting import NotYet
from remediate.transport import Transport

KINDS: Final = ("smtp", "lmtp", "tcp", "command", "health")
# A dialogue that answered like this is worth asking again; anything else (unreachable, no tool) is not.
TRANSIENT: Final = frozenset({"refused", "timeout", "broken", "answered"})


def describe(kind: str, listener: Listener | None, command: Sequence[str] | None) -> str:
    """What `kind` waits for, for the plan: 'wait for ...'."""
    return {"smtp": f"SMTP on {listener}", "lmtp": f"LMTP (greeting and LHLO) on {listener}",
            "tcp": f"TCP connections on {listener}", "command": f"`{' '.join(command or [])}` to exit 0",
            "health": "docker's healthcheck to say healthy"}[kind]


def failure(kind: str, container: str, listener: Listener | None, command: Sequence[str] | None) -> str:
    """What did not happen, for a timeout: '<container> did not come up and ...'."""
    where = f"{listener.address}:{listener.port}" if listener else ""
    return f"{container} did not come up and " + {
        "smtp": f"answer SMTP on {where}", "lmtp": f"answer LMTP on {where}", "tcp": f"accept connections on {where}",
        "command": f"pass `{' '.join(command or [])}`", "health": "become healthy"}[kind]


def running(transport: Transport, container: str) -> dict[str, Any]:
    """The container's facts once it runs; StepError when it exited or restarts (with its last log lines)."""
    facts = inspect(transport, container)
    if facts is not None and (facts["State"]["Restarting"] or facts["State"]["Status"] in ("exited", "dead")):
        tail = " | ".join(logs(transport, container)[-4:])
        raise StepError(f"{container} is {facts['State']['Status']} (exit code {facts['State']['ExitCode']}); "
                        f"its log ends: {tail or '(empty)'}")
    if facts is None or not facts["State"]["Running"]:
        raise NotYet(f"{container} is {'missing' if facts is None else facts['State']['Status']}")
    return facts


def ready(transport: Transport, kind: str, container: str, listener: Listener | None,
          command: Sequence[str] | None) -> str:
    """One look: what proves the container ready, or NotYet/StepError."""
    facts = running(transport, container)
    since = f"{container} running since {facts['State']['StartedAt'][:19]}Z"
    if kind == "health":
        health = (facts["State"].get("Health") or {}).get("Status")
        if health is None:
            raise StepError(f"{container} has no healthcheck, so 'health' cannot prove it ready",
                            hint="add a healthcheck: to the service, or choose another ready: kind")
        if health != "healthy":
            raise NotYet(f"{container} is {health}")
        return f"{since}; docker says healthy"
    if kind == "command":
        result = transport.run(list(command or []))
        if not result.ok:
            raise NotYet(f"`{result.command}` exited {result.exit_code}: {result.output.strip()[-120:] or '(no output)'}")
        return f"{since}; `{result.command}` exits 0"
    assert listener is not None
    commands = {"smtp": ("QUIT",), "lmtp": ("LHLO remediate.probe", "QUIT"), "tcp": ()}[kind]
    exchange = talk(transport, listener.address, listener.port, commands)
    if kind == "tcp" and exchange.status in ("answered", "broken"):
        return f"{since}; {listener.address}:{listener.port} accepts connections ({exchange.route})"
    if exchange.status == "answered" and exchange.greeting.startswith("220") and (
            kind == "smtp" or exchange.reply(0).startswith("250")):
        return f"{since}; {listener.address}:{listener.port} says {exchange.greeting.strip()[:60]} ({exchange.route})"
    if exchange.status not in TRANSIENT:
        raise StepError(f"cannot probe {listener}: {exchange.describe()}",
                        hint="set smtp_address to an address the host reaches the service on")
    raise NotYet(exchange.describe())
