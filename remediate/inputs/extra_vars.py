"""-e as Ansible takes it: key=value, @FILE or a JSON object -> the extra variables, which win over all others."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from remediate import jsonin
from remediate import yamlin as source
from remediate.errors import InputError


def parse_extra(pairs: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """-e as Ansible takes it: key=value (strings, except whole numbers, true/false and [a, b] lists), @FILE (a YAML
    or JSON mapping), or a JSON object; later ones win."""
    extra: dict[str, Any] = {}
    for pair in pairs:
        if pair.startswith("@"):
            doc = source.load(Path(pair[1:]), what="variables file")
            if not isinstance(doc, dict):
                raise InputError(f"{pair[1:]}: -e @FILE must hold a mapping of variable names to values")
            extra.update(source.plain(doc))
            continue
        if pair.lstrip().startswith("{"):
            doc = jsonin.loads(pair, what=f"-e {_brief(pair)}", hint='for example -e \'{"lmtp_port": 2525}\'')
            if not isinstance(doc, dict):
                raise InputError(f"-e {_brief(pair)}: a JSON value for -e must be an object")
            extra.update(doc)
            continue
        key, sep, value = pair.partition("=")
        if not sep or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise InputError(f"-e {pair!r}: expected key=value with a key of letters, digits and _",
                             hint="for example -e lmtp_port=2525")
        extra[key] = _typed(value)
    return extra


def _brief(pair: str) -> str:
    """An -e argument as an error quotes it: whole when short, else its start."""
    return repr(pair) if len(pair) <= 60 else repr(pair[:50]) + f"... ({len(pair)} characters)"


def _typed(value: str) -> Any:
    if re.fullmatch(r"-?\d+", value):
        return int(value)
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    if value.startswith("[") and value.endswith("]"):
        return [v.strip() for v in value[1:-1].split(",") if v.strip()]
    return value
