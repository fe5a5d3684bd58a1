"""The queues `postqueue -j` names and the protocols a next hop speaks: what the queue check type's and the
queue-flush kind's parameters accept, without loading the queue probe (queue.py) until one of them runs."""

from __future__ import annotations

from typing import Final

#: The queues postqueue -j names (queue_name).
QUEUES: Final = ("deferred", "active", "hold", "incoming", "maildrop")
PROTOCOLS: Final = ("lmtp", "smtp")
