"""The rules file: which alerts run which playbook, on which host, with what approval. Errors cite file:line."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from remediate import yamlin as source
from remediate.errors import InputError
from remediate.inputs import playbook as playbook_mod

TOP_KEYS: Final = frozenset({"rules", "notify", "roles"})
RULE_KEYS: Final = frozenset({"name", "match", "playbook", "host_label", "vars", "approval", "max_runs_per_hour",
                              "resolve_timeout", "on_unresolved", "approvals", "approval_expires", "escalate", "chat",
                              "silence", "verify_again"})
CHAT_KEYS: Final = frozenset({"webhook_env"})
ENV_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
NOTIFY_KEYS: Final = frozenset({"url", "token_env"})
DURATION: Final = re.compile(r"^(\d+)(s|m|h)\Z")
UNITS: Final = {"s": 1, "m": 60, "h": 3600}


@dataclass(frozen=True)
class Rule:
    name: str
    match: Mapping[str, str]
    playbook: str
    host_label: str = "instance"
    vars: Mapping[str, Any] = field(default_factory=dict)
    approval: str = "required"  # or auto
    max_runs_per_hour: int = 2
    resolve_timeout: float = 600.0  # seconds
    on_unresolved: str = "rollback"  # or keep
    where: str = ""
    #: Distinct people who must approve (four eyes: 2); the one who asked for the run is never one of them.
    approvals: int = 1
    #: How long an approval counts (seconds): an older one is not counted.
    approval_expires: float = 3600.0
    #: Called when an incident of this rule ends failed or rolled back, with the evidence.
    escalate: tuple[Notify, ...] = ()
    #: Where the pending incident is posted with Approve/Deny buttons (Slack or Mattermost's Slack-compatible hooks).
    chat: Chat | None = None
    #: Silence the alert in Alertmanager while the fix runs (with serve --alertmanager).
    silence: bool = True
    #: "resolved" also needs the playbook's verify to pass again.
    verify_again: bool = False

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match.items())

    def extra(self) -> tuple[str, ...]:
        """The rule's vars as one -e document."""
        return (json.dumps(dict(self.vars)),) if self.vars else ()


@dataclass(frozen=True)
class Notify:
    """An outgoing webhook: every outcome is POSTed there as JSON (Bearer $token_env, when named)."""

    url: str
    token_env: str | None = None


@dataclass(frozen=True)
class Chat:
    """An incoming webhook to post pending incidents to; its URL is a secret, so the rules file names the environment
    variable that holds it."""

    webhook_env: str


@dataclass(frozen=True)
class Rules:
    path: Path
    rules: tuple[Rule, ...]
    notify: tuple[Notify, ...] = ()
    #: The rules file's roles: node as it was read (None when it has none); serve/roles.py makes it a Roles.
    roles: Any = None

    def route(self, labels: Mapping[str, str]) -> Rule | None:
        """The first rule whose match holds."""
        return next((r for r in self.rules if r.matches(labels)), None)

    def named(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)


def duration(value: Any, where: str) -> float:
    """'90s', '10m', '1h' (or a number of seconds) as seconds."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return float(value)
    found = DURATION.match(str(value).strip()) if isinstance(value, str) else None
    if not found or int(found.group(1)) == 0:
        raise InputError(f"{where}: {value!r} is not a duration", hint="write it as 90s, 10m or 1h")
    return float(int(found.group(1)) * UNITS[found.group(2)])


def load(path: Path) -> Rules:
    """Read and check a rules file, each playbook included, before serve starts listening."""
    name = str(path)
    if not path.exists():
        raise InputError(f"{path}: rules file not found", hint="docs/serve.md shows the format")
    doc = source.load(path, what="rules file")
    if not isinstance(doc, dict):
        raise InputError(f"{name}: a rules file is a mapping with rules: (and notify:)")
    source.only_keys(name, doc, TOP_KEYS, "rules file")
    nodes = doc.get("rules")
    if not isinstance(nodes, list) or not nodes:
        raise InputError(f"{source.where(name, doc, 'rules')}: rules: must be a non-empty list")
    rules: list[Rule] = []
    for index, node in enumerate(nodes):
        rule = _rule(node, source.where(name, nodes, index=index), name)
        if any(r.name == rule.name for r in rules):
            raise InputError(f"{source.where(name, node, 'name')}: rule name {rule.name!r} is used twice")
        rules.append(rule)
    return Rules(path, tuple(rules), _notify(doc.get("notify"), doc, name, "notify"), doc.get("roles"))


def _rule(node: Any, at: str, name: str) -> Rule:
    if not isinstance(node, dict):
        raise InputError(f"{at}: a rule is a mapping with name:, match: and playbook:")
    source.only_keys(name, node, RULE_KEYS, "rule")

    def here(key: str) -> str:
        return str(source.where(name, node, key))

    rule_name = node.get("name")
    if not isinstance(rule_name, str) or not rule_name.strip():
        raise InputError(f"{here('name') if 'name' in node else at}: a rule needs a name: string")
    match = node.get("match")
    if not isinstance(match, dict) or not match or not all(isinstance(v, (str, int)) and not isinstance(v, bool)
                                                           for v in match.values()):
        raise InputError(f"{here('match') if 'match' in node else at}: rule {rule_name!r} needs match:, a mapping of "
                         f"label names to the values they must equal", hint="match: {alertname: PostfixRelayBounces}")
    book = node.get("playbook")
    if not isinstance(book, str) or not book:
        raise InputError(f"{here('playbook') if 'playbook' in node else at}: rule {rule_name!r} needs playbook:, "
                         f"a shipped playbook's name or a path")
    try:
        beside = Path(name).parent / book  # a relative path is read from the rules file's folder first
        located = playbook_mod.locate(str(beside) if not Path(book).is_absolute() and beside.is_file() else book)
        playbook_mod.load(located)
    except InputError as e:
        raise InputError(f"{here('playbook')}: rule {rule_name!r}: {e.message}", hint=e.hint) from None
    host_label = node.get("host_label", "instance")
    if not isinstance(host_label, str) or not host_label:
        raise InputError(f"{here('host_label')}: host_label: names the label that holds the host")
    variables = node.get("vars") or {}
    if not isinstance(variables, dict):
        raise InputError(f"{here('vars')}: vars: must be a mapping of variable names to values")
    approval = node.get("approval", "required")
    if approval not in ("required", "auto"):
        raise InputError(f"{here('approval')}: approval: is required or auto, not {approval!r}")
    limit = node.get("max_runs_per_hour", 2)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InputError(f"{here('max_runs_per_hour')}: max_runs_per_hour: must be a whole number, 1 or more")
    on_unresolved = node.get("on_unresolved", "rollback")
    if on_unresolved not in ("rollback", "keep"):
        raise InputError(f"{here('on_unresolved')}: on_unresolved: is rollback or keep, not {on_unresolved!r}")
    timeout = duration(node.get("resolve_timeout", "10m"), here("resolve_timeout") if "resolve_timeout" in node else at)
    return Rule(rule_name, {str(k): str(v) for k, v in match.items()}, str(located), host_label,
                source.plain(variables), approval, limit, timeout, on_unresolved, at, **_people(node, here, name))


def _people(node: dict[str, Any], here: Callable[[str], str], name: str) -> dict[str, Any]:
    """The rule's keys about people and proof: approvals, approval_expires, escalate, chat, silence, verify_again."""
    count = node.get("approvals", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 10:
        raise InputError(f"{here('approvals')}: approvals: is how many distinct people must approve, 1 to 10")
    expires = duration(node.get("approval_expires", "1h"), here("approval_expires"))
    chat = node.get("chat")
    if chat is not None:
        if not isinstance(chat, dict) or not ENV_NAME.match(str(chat.get("webhook_env", ""))):
            raise InputError(f"{here('chat')}: chat: is {{webhook_env: NAME}}, the environment variable holding the "
                             "Slack (or Mattermost) incoming webhook URL")
        source.only_keys(name, chat, CHAT_KEYS, "chat")
    flags = {}
    for key, default in (("silence", True), ("verify_again", False)):
        value = node.get(key, default)
        if not isinstance(value, bool):
            raise InputError(f"{here(key)}: {key}: is true or false, not {value!r}")
        flags[key] = value
    return {"approvals": count, "approval_expires": expires, "chat": Chat(str(chat["webhook_env"])) if chat else None,
            "escalate": _notify(node.get("escalate"), node, name, "escalate"), **flags}


def shown(url: str) -> str:
    """A notify URL as serve shows it: scheme://host[:port]/… (the rest may be a Slack-style hook's secret)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or "?"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}/…"


def _notify(node: Any, doc: dict[str, Any], name: str, key: str) -> tuple[Notify, ...]:
    if node is None:
        return ()
    if not isinstance(node, list):
        raise InputError(f"{source.where(name, doc, key)}: {key}: must be a list of {{url: ...}}")
    found = []
    for index, item in enumerate(node):
        at = source.where(name, node, index=index)
        item = {"url": item} if isinstance(item, str) else item
        if not isinstance(item, dict):
            raise InputError(f"{at}: a notify entry is a URL or {{url: URL, token_env: NAME}}")
        if isinstance(item, dict) and hasattr(item, "lc"):
            source.only_keys(name, item, NOTIFY_KEYS, "notify entry")
        url = str(item.get("url") or "")
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise InputError(f"{at}: notify url {shown(url)!r} is not an http(s) URL (the URL is shown cut short: "
                             "it may be a secret)")
        token_env = item.get("token_env")
        if token_env is not None and not (isinstance(token_env, str) and ENV_NAME.match(token_env)):
            raise InputError(f"{at}: token_env: names an environment variable, not {token_env!r}")
        found.append(Notify(url, token_env))
    return tuple(found)
