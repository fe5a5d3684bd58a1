"""Who may do what: the rules file's roles: node (each role's members and its grants of actions, optionally on some
rules and some hosts), checked with file:line when serve starts, and the one question every decision asks of it.

A person's roles are their token's (`serve tokens add NAME --role R`) and every role that lists them in members:.
The built-in role `admin` may do everything; a rules file cannot redefine it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Final

from remediate import yamlin as source
from remediate.errors import InputError
from remediate.serve.identity import ADMIN, NAME, Person
from remediate.serve.rules import Rules

__all__ = ["ACTIONS", "Grant", "Role", "Roles", "load"]

#: Every permission: pause covers resume; request is a manual trigger and a re-plan.
ACTIONS: Final = ("approve", "deny", "rollback", "pause", "request")
ROLE_KEYS: Final = frozenset({"members", "allow"})
GRANT_KEYS: Final = frozenset({"actions", "rules", "hosts"})
EXAMPLE: Final = "roles: {mail-oncall: {members: [alice], allow: [{actions: [approve, deny], rules: [smtp-to-lmtp]}]}}"


@dataclass(frozen=True)
class Grant:
    """Some actions, on some rules (None: every rule) and hosts matching some globs (None: every host)."""

    actions: frozenset[str]
    rules: tuple[str, ...] | None = None
    hosts: tuple[str, ...] | None = None

    def allows(self, action: str, rule: str | None, host: str | None) -> bool:
        if action not in self.actions:
            return False
        if self.rules is not None and (rule is None or rule not in self.rules):
            return False
        return self.hosts is None or (host is not None and any(fnmatchcase(host, glob) for glob in self.hosts))


@dataclass(frozen=True)
class Role:
    name: str
    members: frozenset[str] = frozenset()
    grants: tuple[Grant, ...] = ()


@dataclass(frozen=True)
class Roles:
    """The roles of one rules file, by name (admin is not among them: it is built in)."""

    roles: Mapping[str, Role] = field(default_factory=dict)

    def held(self, person: Person) -> frozenset[str]:
        """The person's roles: their token's, and each role listing them as a member."""
        return person.roles | {r.name for r in self.roles.values() if person.name in r.members}

    def allows(self, person: Person, action: str, rule: str | None = None, host: str | None = None) -> bool:
        """Whether some role of the person grants `action` on `rule` and `host` (pause: a grant on every rule and
        host)."""
        held = self.held(person)
        if ADMIN in held:
            return True
        return any(grant.allows(action, rule, host)
                   for name in held if name in self.roles for grant in self.roles[name].grants)

    def refusal(self, person: Person, action: str, rule: str | None = None, host: str | None = None) -> str:
        """Why the person may not: the words of the 403 and of the audit line."""
        what = action + (f" rule {rule}" if rule else "") + (f" on host {host}" if host else "")
        held = self.held(person)
        unknown = sorted(r for r in held if r != ADMIN and r not in self.roles)
        said = f"{person.said} may not {what}: no role grants it"
        if not held:
            return f"{said} (they hold no role)"
        if unknown:
            return f"{said} (roles {', '.join(sorted(held))}; not in the rules file: {', '.join(unknown)})"
        return f"{said} (roles {', '.join(sorted(held))})"


def load(rules: Rules) -> Roles:
    """The rules file's roles: node, checked (InputError with file:line); no node: no roles but admin."""
    node = rules.roles
    name = str(rules.path)
    if node is None:
        return Roles({})
    if not isinstance(node, dict):
        raise InputError(f"{name}: roles: is a mapping of role names to {{members: [...], allow: [...]}}", hint=EXAMPLE)
    known = {r.name for r in rules.rules}
    found: dict[str, Role] = {}
    for key, body in node.items():
        at = source.where(name, node, key)
        role = str(key)
        if role == ADMIN:
            raise InputError(f"{at}: the role {ADMIN!r} is built in (every permission) and cannot be redefined",
                             hint="name this role otherwise, and give admin with `serve tokens add NAME --role admin`")
        if not NAME.match(role):
            raise InputError(f"{at}: {role!r} is not a role name", hint="letters, digits, '.', '_', '@' or '-'")
        found[role] = _role(role, body, at, name, known)
    return Roles(found)


def _role(role: str, body: Any, at: str, name: str, known: set[str]) -> Role:
    if not isinstance(body, dict):
        raise InputError(f"{at}: role {role!r} is a mapping with members: and allow:", hint=EXAMPLE)
    source.only_keys(name, body, ROLE_KEYS, "role")
    members = _names(body.get("members", []), source.where(name, body, "members"), f"role {role!r}: members:")
    for member in members:
        if not NAME.match(member):
            raise InputError(f"{source.where(name, body, 'members')}: role {role!r}: {member!r} is not a person's name")
    allow = body.get("allow", [])
    if not isinstance(allow, list):
        raise InputError(f"{source.where(name, body, 'allow')}: role {role!r}: allow: is a list of "
                         "{actions: [...], rules: [...], hosts: [...]}", hint=EXAMPLE)
    grants = tuple(_grant(item, source.where(name, allow, index=i), name, known, role) for i, item in enumerate(allow))
    return Role(role, frozenset(members), grants)


def _grant(item: Any, at: str, name: str, known: set[str], role: str) -> Grant:
    if not isinstance(item, dict):
        raise InputError(f"{at}: role {role!r}: a grant is {{actions: [...], rules: [...], hosts: [...]}}", hint=EXAMPLE)
    source.only_keys(name, item, GRANT_KEYS, "grant")
    actions = _names(item.get("actions"), source.where(name, item, "actions") if "actions" in item else at,
                     f"role {role!r}: actions:")
    if not actions:
        raise InputError(f"{at}: role {role!r}: a grant needs actions: ({', '.join(ACTIONS)})")
    for action in actions:
        if action not in ACTIONS:
            raise InputError(f"{source.where(name, item, 'actions')}: role {role!r}: {action!r} is not an action",
                             hint=f"the actions are {', '.join(ACTIONS)} (pause also resumes)")
    rules = None
    if "rules" in item:
        rules = _names(item["rules"], source.where(name, item, "rules"), f"role {role!r}: rules:")
        for rule in rules:
            if rule not in known:
                raise InputError(f"{source.where(name, item, 'rules')}: role {role!r}: no rule is named {rule!r}",
                                 hint=f"the rules are {', '.join(sorted(known))}")
    hosts = _names(item["hosts"], source.where(name, item, "hosts"), f"role {role!r}: hosts:") if "hosts" in item else None
    return Grant(frozenset(actions), rules, hosts)


def _names(value: Any, at: str, what: str) -> tuple[str, ...]:
    """A list of non-empty strings (one string is a list of one)."""
    value = [value] if isinstance(value, str) else value
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise InputError(f"{at}: {what} is a list of names")
    return tuple(str(v).strip() for v in value)
