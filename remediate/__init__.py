"""remediate: idempotent, reversible incident remediation over SSH."""

from __future__ import annotations

from remediate.deferred import defer, defer_metadata

defer("invoke")  # paramiko imports it at start-up, for `Match exec` only (see deferred.py)
defer_metadata()  # paramiko imports it at start-up, for its own version only

__version__ = "0.2.0.dev0"
