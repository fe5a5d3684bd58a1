"""The base of every event: its name and its JSON form (`as_dict`, the one serializer), and an event again from
that form (`parse`). The events themselves are in events (a run's) and listing (the commands that only read)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, ClassVar

from remediate.contract.plan import ShownPlan
from remediate.records import plain


# Events are built once and printed once: plain classes (identity, no repr of their fields), the cheapest to make.
@plain
class Event:
    """Base: `event` is the name in JSON; fields left at None are not printed unless the event always carries them."""

    name: ClassVar[str]
    #: Fields printed even when None (automation reads them as present).
    always: ClassVar[frozenset[str]] = frozenset()

    def as_dict(self) -> dict[str, Any]:
        """The JSON object: `event` first, then the fields in order; `extra` (a record's own fields) and `plan` (a
        step's plan as shown) in their place."""
        out: dict[str, Any] = {"event": self.name}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("extra", "plan"):
                out.update(_json(value))
            elif value is not None or f.name in self.always:
                out[f.name] = _json(value)
        return out

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Event:
        """An event again from its JSON form (a test's or a reader's mapping): its class by `event`, its fields by
        name, the rest in `extra` where the event has one."""
        kind = next(c for c in _subclasses(Event) if c.name == data["event"])
        names = {f.name for f in fields(kind)}
        given = {k: v for k, v in data.items() if k in names and k not in ("event", "extra", "plan")}
        if "plan" in names:
            given["plan"] = ShownPlan.parse(data)
        if "extra" in names:
            given["extra"] = {k: v for k, v in data.items() if k not in names and k != "event"}
        return kind(**kind.typed(given))

    @classmethod
    def typed(cls, given: dict[str, Any]) -> dict[str, Any]:
        """The fields read from JSON, with the typed records the event holds made again from their JSON form."""
        return given


def _subclasses(cls: type[Event]) -> list[type[Event]]:
    return [c for sub in cls.__subclasses__() for c in (sub, *_subclasses(sub))]


def _json(value: Any) -> Any:
    """A field's JSON form: a typed record by its own as_dict, a list or mapping item by item, the rest as it is."""
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if isinstance(value, list):
        return [_json(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _json(v) for k, v in value.items()}
    return value
