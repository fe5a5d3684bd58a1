"""What serve's HTTP routes ask of wherever incidents live: alerts in, incidents out, people's decisions, the pause and
health. Two implementations: the embedded one (the engine over SQLite, EngineBackend here, serve's default) and
Temporal's (serve/temporal/, `serve --backend temporal`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from remediate.serve.engine import Engine, Refused
from remediate.serve.models import State, Webhook
from remediate.serve.store import Incident

__all__ = ["Backend", "EngineBackend", "Health", "Unavailable", "plan_identity"]


class Unavailable(Exception):
    """The backend cannot be reached: answered 503 (Alertmanager retries), and /healthz says why."""


@dataclass(frozen=True)
class Health:
    """/healthz: whether serve can take alerts now, the pause, and why not when it cannot."""

    ok: bool
    paused: bool
    reason: str | None = None

    def public(self) -> dict[str, Any]:
        return {"ok": self.ok, "paused": self.paused, **({"reason": self.reason} if self.reason else {})}


class Backend(Protocol):
    """serve's incidents, wherever they are kept. Every call may raise Unavailable; NotFound and Refused as the
    engine's."""

    def receive(self, payload: Webhook) -> list[dict[str, Any]]:
        """Each alert of a (grouped) payload on its own: {"id", "state", "new"} for each."""
        ...

    def get(self, incident_id: int) -> Incident: ...

    def list(self) -> list[Incident]:
        """Newest first."""
        ...

    def counts(self) -> dict[State, int]: ...

    def approve(self, incident_id: int, by: str, identity: str | None = None) -> Incident:
        """Approve a pending incident whose plan is made; `identity`, when given, is the plan's the approver saw."""
        ...

    def deny(self, incident_id: int, by: str, reason: str) -> Incident: ...

    def pause(self, by: str, reason: str = "") -> str:
        """The kill switch on; who paused it, when and why."""
        ...

    def resume(self, by: str) -> None: ...

    def paused_by(self) -> str | None:
        """Who paused serve, when and why; None while it runs."""
        ...

    def health(self) -> Health: ...


def plan_identity(incident: Incident) -> str | None:
    """The identity of the plan an incident holds (what an approval approves), or None before it is made."""
    plans = (incident.plan or {}).get("plans") or {}
    found = plans.get(incident.host) if isinstance(plans, dict) else None
    return str(found["identity"]) if isinstance(found, dict) and found.get("identity") else None


def check_identity(incident: Incident, identity: str | None) -> None:
    """Refused when the approver saw another plan than the one the incident holds now."""
    if identity is not None and identity != plan_identity(incident):
        raise Refused(f"incident {incident.id}: the plan is not the one you approved (its identity is now "
                      f"{plan_identity(incident)}); look again")


class EngineBackend:
    """The embedded backend: serve's engine and its SQLite store, as they always were."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def receive(self, payload: Webhook) -> list[dict[str, Any]]:
        return self.engine.receive(payload)

    def get(self, incident_id: int) -> Incident:
        return self.engine.get(incident_id)

    def list(self) -> list[Incident]:
        return self.engine.store.all()

    def counts(self) -> dict[State, int]:
        return self.engine.store.counts()

    def approve(self, incident_id: int, by: str, identity: str | None = None) -> Incident:
        if identity is not None:
            check_identity(self.engine.get(incident_id), identity)
        return self.engine.approve(incident_id, by)

    def deny(self, incident_id: int, by: str, reason: str) -> Incident:
        return self.engine.deny(incident_id, by, reason)

    def pause(self, by: str, reason: str = "") -> str:
        return self.engine.pause(by, reason)

    def resume(self, by: str) -> None:
        self.engine.resume(by)

    def paused_by(self) -> str | None:
        return self.engine.store.setting("paused_by") if self.engine.paused else None

    def health(self) -> Health:
        return Health(True, self.engine.paused)
