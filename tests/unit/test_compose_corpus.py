"""The relay edit on every shape of the corpus: the exact resolved result, or a refusal naming the real reason."""

from __future__ import annotations

import posixpath

import pytest

from remediate.contract.plan import FileChange
from remediate.engine.context import Context, TransportPool
from remediate.errors import InputError
from remediate.inputs.inventory import Host
from remediate.kinds import StepSpec
from remediate.kinds.relay_transport import RelayTransport
from remediate.mail import resolve
from tests.corpus.compose_shapes import SHAPES, Shape

from .fakes import FakeTransport

ROOT = "/srv/mail"


def relay_step(shape: Shape | None = None) -> RelayTransport:
    return RelayTransport(StepSpec(id="relay-transport", kind="relay-transport", target="host",
                                   params={"path": f"{ROOT}/docker-compose.yml", "service": "postfix",
                                           "compose_config": False,  # compose itself: tests/lab/test_compose_shapes.py
                                           **(shape.params if shape else {})}))


def at(name: str) -> str:
    """Where a shape's file lives on the fake host."""
    return posixpath.normpath(posixpath.join(ROOT, name))


def host_with(shape: Shape) -> FakeTransport:
    t = FakeTransport(name="gw")
    for name, text in shape.files.items():
        t.put(at(name), text)
    return t


@pytest.mark.parametrize("shape", SHAPES, ids=[s.name for s in SHAPES])
def test_every_shape_is_edited_exactly_or_refused_for_its_reason(shape: Shape) -> None:
    t = host_with(shape)
    ctx = Context(host=Host(name="gw", address="x"), vars={}, run_id="R", pool=TransportPool(None, lambda h: t))
    if shape.outcome == "refuse":
        with pytest.raises(InputError) as e:
            relay_step(shape).plan(ctx)
        for words in shape.words:
            assert words in str(e.value), str(e.value)
        return
    plan = relay_step(shape).plan(ctx)
    if shape.outcome == "noop":
        assert not plan.changed, plan
        return
    changed = {posixpath.relpath(f.path, ROOT): f.after.decode() for f in plan.files}
    assert sorted(changed) == sorted(shape.changed), plan.reason
    for name, text in shape.exact.items():
        assert changed[name] == text
    for words in shape.words:
        assert words in plan.reason, plan.reason
    after = {**{at(n): t.files[at(n)] for n in shape.files},
             **{f.path: t.files[f.path].__class__(f.path, f.after, 0o644, 0, 0) for f in plan.files}}
    env = resolve.read(after.get, f"{ROOT}/docker-compose.yml", "postfix").resolved()
    assert env.get("POSTFIX_relay_transport") == shape.resolved and env.get("RELAYHOST") == shape.relayhost, env
    again = Context(host=ctx.host, vars={}, run_id="R2", pool=TransportPool(None, lambda h: fixed(t, plan.files)))
    assert not relay_step(shape).plan(again).changed, "the edit is not idempotent"


def fixed(t: FakeTransport, files: tuple[FileChange, ...]) -> FakeTransport:
    """The host once the plan's files are written."""
    for change in files:
        t.put(change.path, change.after)
    return t


def test_the_corpus_is_broad_enough() -> None:
    assert len(SHAPES) >= 25
    assert {s.outcome for s in SHAPES} == {"edit", "noop", "refuse"}
