"""What serve handles: an incident's states, and Alertmanager's webhook payload, version 4
(https://prometheus.io/docs/alerting/latest/configuration/#webhook_config) as pydantic models: anything else is
answered 400 with the reason."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["FINAL", "OPEN", "Alert", "State", "Webhook", "ValidationError", "reason"]


class State(StrEnum):
    """Where an incident stands (engine.py draws the whole path). The values are what SQLite keeps and the HTTP API
    and the page show: a State compares equal to its value."""

    PENDING = "pending"
    DENIED = "denied"
    RUNNING = "running"
    WAITING_RESOLVED = "waiting_resolved"
    RESOLVED = "resolved"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"
    IGNORED = "ignored"

    @property
    def said(self) -> str:
        """The state as the audit log words it: 'rolled back', 'waiting resolved'."""
        return self.value.replace("_", " ")


#: States an incident never leaves.
FINAL: Final = frozenset({State.DENIED, State.RESOLVED, State.ROLLED_BACK, State.FAILED, State.IGNORED})
#: States a decision may still move on from: what a failure, or the deadline, finishes.
OPEN: Final = (State.PENDING, State.RUNNING, State.WAITING_RESOLVED)


class Alert(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime
    endsAt: datetime | None = None
    generatorURL: str = ""
    fingerprint: str = Field(min_length=1, max_length=128)

    @field_validator("startsAt")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    @property
    def starts_at(self) -> str:
        """The firing's start, normalised (UTC, microseconds): one spelling per instant, for the dedupe key."""
        return self.startsAt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Webhook(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: Literal["4"]
    groupKey: str = ""
    truncatedAlerts: int = 0
    status: Literal["firing", "resolved"]
    receiver: str = ""
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: list[Alert] = Field(max_length=1000)


def reason(error: ValidationError) -> str:
    """pydantic's errors as one line: 'alerts.0.fingerprint: Field required; version: ...'."""
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "payload"
        parts.append(f"{where}: {item['msg']}")
    more = len(error.errors()) - 5
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")
