"""serve --backend temporal's options as the command line gives them (standard library only: `remediate serve` reads
them before it knows whether the Temporal SDK is installed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["TemporalOptions"]


@dataclass(frozen=True)
class TemporalOptions:
    """serve --backend temporal's --temporal-* options (the TLS files as paths, read at start)."""

    address: str = "127.0.0.1:7233"
    namespace: str = "default"
    task_queue: str = "remediate"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    api_key: str | None = None
    #: Seconds an apply or rollback may go without a heartbeat before Temporal retries it on another worker.
    heartbeat_timeout: float = 60.0

    def __repr__(self) -> str:  # the API key never reaches a traceback or a log
        return (f"TemporalOptions(address={self.address!r}, namespace={self.namespace!r}, "
                f"task_queue={self.task_queue!r}, api_key={'***' if self.api_key else None}, "
                f"heartbeat_timeout={self.heartbeat_timeout!r})")
