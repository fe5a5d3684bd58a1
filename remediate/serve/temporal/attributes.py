"""The search attributes serve needs in its namespace (shared.SEARCH_ATTRIBUTES): checked at connect, added when
missing (a dev server, or an API key with the right to), and otherwise named with the commands that create them."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import RPCError

from remediate.serve.temporal import shared

#: Temporal's types, by the name its CLI gives them.
TYPES = {"Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
         "Datetime": IndexedValueType.INDEXED_VALUE_TYPE_DATETIME}


@dataclass(frozen=True)
class Checked:
    """What the check found: the attributes it added, and what is still wrong (None when nothing is)."""

    added: tuple[str, ...] = ()
    problem: str | None = None
    #: True when the namespace could not even be read: serve carries on (its calls say what is missing, if anything)
    unchecked: bool = False


async def ensure(client: Client, namespace: str) -> Checked:
    """Every attribute serve needs, in `namespace`: those missing added one by one; what could not be, named."""
    try:
        found = await _present(client, namespace)
    except RPCError as e:
        return Checked(problem=f"serve could not read the search attributes of Temporal namespace {namespace} "
                               f"({e.message}); if any of {', '.join(shared.SEARCH_ATTRIBUTES)} is missing, "
                               f"create it: {commands(namespace, dict(shared.SEARCH_ATTRIBUTES))}", unchecked=True)
    wrong = {name: kind for name, kind in shared.SEARCH_ATTRIBUTES.items()
             if name in found and found[name] != TYPES[kind]}
    if wrong:
        return Checked(problem=f"Temporal namespace {namespace} has the search attribute(s) "
                               f"{', '.join(wrong)} with another type than serve needs "
                               f"({', '.join(f'{n}: {k}' for n, k in wrong.items())}): remove them with `temporal "
                               f"operator search-attribute remove --namespace {namespace} "
                               f"{' '.join(f'--name {n}' for n in wrong)}`, then {commands(namespace, wrong)}")
    added, refused, why = [], {}, ""
    for name, kind in shared.SEARCH_ATTRIBUTES.items():
        if name in found:
            continue
        try:
            await client.operator_service.add_search_attributes(AddSearchAttributesRequest(
                namespace=namespace, search_attributes={name: TYPES[kind]}))
        except RPCError as e:
            refused[name], why = kind, e.message
            continue
        added.append(name)
    if refused:
        return Checked(tuple(added), f"Temporal namespace {namespace} lacks the search attribute(s) "
                                     f"{', '.join(refused)} and refused to add them ({why}): "
                                     f"{commands(namespace, refused)}")
    return Checked(tuple(added))


async def _present(client: Client, namespace: str) -> dict[str, int]:
    listed = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    return {**dict(listed.system_attributes), **dict(listed.custom_attributes)}


def commands(namespace: str, wanted: dict[str, str]) -> str:
    """The commands that create `wanted` (name -> type) in `namespace`: one per type, as Temporal's CLI takes them."""
    kinds = sorted(set(wanted.values()))
    made = [f"`temporal operator search-attribute create --namespace {namespace} "
            f"{' '.join(f'--name {n}' for n, k in wanted.items() if k == kind)} --type {kind}`" for kind in kinds]
    return " and ".join(made) + " (on Temporal Cloud: `tcld namespace search-attributes add`)"


__all__ = ["Checked", "commands", "ensure"]
