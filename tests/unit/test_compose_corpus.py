"""The relay edit on every shape of the corpus: the exact resolved result, or a refusal naming the real reason."""

from __future__ import annotations

import posixpath

import pytest

from remediate import resolve
from remediate.context import Context, TransportPool
from remediate.errors import InputError
from remediate.inventory import Host
from remediate.steps import StepSpec
from remediate.steps.relay_transport import RelayTransport
from tests.corpus.compose_shapes import SHAPES, Shape

from .fakes import FakeTransport

ROOT = "/srv/mail"


def relay_step() -> RelayTransport:
    return RelayTransport(StepSpec(id="relay-transport", kind="relay-transport", target="host",
                                   params={"path": f"{ROOT}/docker-compose.yml", "service": "postfix",
                                           "compose_config": False}))  # compose itself: tests/lab/test_compose_shapes.py


def host_with(shape: Shape) -> FakeTransport:
    t = FakeTransport(name="gw")
    for name, text in shape.files.items():
        t.put(posixpath.join(ROOT, name), text)
    return t


@pytest.mark.parametrize("shape", SHAPES, ids=[s.name for s in SHAPES])
def test_every_shape_is_edited_exactly_or_refused_for_its_reason(shape: Shape) -> None:
    t = host_with(shape)
    ctx = Context(host=Host(name="gw", address="x"), vars={}, run_id="R", pool=TransportPool(None, lambda h: t))
    if shape.outcome == "refuse":
        with pytest.raises(InputError) as e:
            relay_step().check(ctx)
        for words in shape.words:
            assert words in str(e.value), str(e.value)
        return
    plan = relay_step().check(ctx)
    if shape.outcome == "noop":
        assert not plan.changed, plan
        return
    changed = {posixpath.relpath(f.path, ROOT): f.after.decode() for f in plan.files}
    assert sorted(changed) == sorted(shape.changed), plan.reason
    for name, text in shape.exact.items():
        assert changed[name] == text
    for words in shape.words:
        assert words in plan.reason, plan.reason
    after = {**{posixpath.join(ROOT, n): t.files[posixpath.join(ROOT, n)] for n in shape.files},
             **{f.path: t.files[f.path].__class__(f.path, f.after, 0o644, 0, 0) for f in plan.files}}
    env = resolve.read(after.get, f"{ROOT}/docker-compose.yml", "postfix").resolved()
    assert env.get("POSTFIX_relay_transport") == shape.resolved and "RELAYHOST" not in env, env


def test_the_corpus_is_broad_enough() -> None:
    assert len(SHAPES) >= 25
    assert {s.outcome for s in SHAPES} == {"edit", "noop", "refuse"}
