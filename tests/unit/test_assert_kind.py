"""The assert step kind: any check type of diagnose: as a verification step, read at plan time, proven by verify."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from remediate.contract.plan import NOTHING_APPLIED
from remediate.engine.context import Context, TransportPool
from remediate.errors import InputError, StepError
from remediate.inputs import playbook
from remediate.inputs.inventory import Host
from remediate.kinds import REGISTRY, StepSpec, load_kinds
from remediate.kinds.assertion import Assert
from remediate.probes import containers, facts

from .fakes import FakeTransport

COMPOSE = "/srv/docker-compose.yml"
COVERS = {"check": "postfix-setting", "container": "mx", "compose_path": COMPOSE, "service": "postfix",
          "setting": "mynetworks", "expect": {"covers": ["10.0.3.7"]}}


def host(mynetworks: list[str]) -> FakeTransport:
    """A host whose Postfix runs with mynetworks: each read gives the next value (the last one stays)."""
    t = FakeTransport(name="gw")
    t.put(COMPOSE, "services:\n  postfix:\n    image: boky/postfix\n    environment:\n"
                   "      - POSTFIX_mynetworks=127.0.0.0/8\n")
    t.expect(["docker", "inspect", "--type", "container", "--", "mx"],
             (0, json.dumps([{"State": {"Running": True, "Status": "running"}}]), ""))
    values = list(mynetworks)
    t.expect(["docker", "exec", "--", "mx", "postconf", "-h", "mynetworks"],
             lambda stdin: (0, (values.pop(0) if len(values) > 1 else values[0]) + "\n", ""))
    return t


def step(**params: Any) -> Assert:
    return Assert(StepSpec(id="covered", kind="assert", target="host", where="book.yml:9", params=params))


def context(transport: FakeTransport) -> Context:
    return Context(host=Host(name="gw", address="x"), vars={}, run_id="R", pool=TransportPool(None, lambda h: transport))


def test_assert_is_a_kind_that_only_proves() -> None:
    load_kinds()
    assert REGISTRY["assert"] is Assert and Assert.proves_only


def test_plan_reads_the_check_now_and_verify_fails_with_its_evidence() -> None:
    ctx = context(host(["127.0.0.0/8"]))
    s = step(**COVERS)
    plan = s.plan(ctx)
    assert not plan.changed and plan.checks == ("the check postfix-setting holds: One Postfix setting (running, else "
                                                "as the compose file sets it) against an expectation.",)
    assert "postfix-setting now: mynetworks='127.0.0.0/8' does not cover 10.0.3.7" in plan.reason
    with pytest.raises(StepError, match=r"^postfix-setting does not hold: mynetworks='127.0.0.0/8' does not cover "
                                        r"10\.0\.3\.7"):
        s.verify(ctx, plan, NOTHING_APPLIED)


def test_verify_reads_the_host_again_after_the_plan() -> None:
    """The plan's read is not the proof: what the steps between them changed is read anew."""
    ctx = context(host(["127.0.0.0/8", "127.0.0.0/8, 10.0.3.0/24"]))
    s = step(**COVERS)
    plan = s.plan(ctx)
    assert "does not cover" in plan.reason
    assert s.verify(ctx, plan, NOTHING_APPLIED) == "postfix-setting: mynetworks='127.0.0.0/8, 10.0.3.0/24' covers 10.0.3.7"


def test_a_check_that_cannot_decide_fails_the_verification() -> None:
    t = host(["127.0.0.0/8"])
    t.expect(["docker", "inspect", "--type", "container", "--", "mx"],
             (0, json.dumps([{"State": {"Running": False, "Status": "exited"}}]), ""))
    s = step(check="postfix-applied", container="mx", compose_path=COMPOSE, service="postfix", settings=["mynetworks"])
    with pytest.raises(StepError, match="postfix-applied could not be decided: container not running"):
        s.verify(context(t), s.plan(context(t)), NOTHING_APPLIED)


@pytest.mark.parametrize(("params", "words"), [
    ({**COVERS, "settin": "x"}, r"book.yml:9: step 'covered' \(postfix-setting\) has no parameter 'settin'"),
    ({k: v for k, v in COVERS.items() if k != "setting"}, r"step 'covered' \(postfix-setting\) needs the parameter "
                                                           r"'setting'"),
    ({**COVERS, "expect": {"within": 1}}, r"book.yml:9: step 'covered': expect must hold exactly one of"),
    ({**COVERS, "check": "postfix-seting"}, r"check must name a check type, not 'postfix-seting'"),
    ({k: v for k, v in COVERS.items() if k != "check"}, r"check must name a check type, not None"),
])
def test_its_params_are_the_check_types_own_checked_the_same_way(params: dict[str, Any], words: str) -> None:
    with pytest.raises(InputError, match=words) as e:
        step(**params)
    if params.get("check") == "postfix-seting":
        assert "did you mean 'postfix-setting'?" in (e.value.hint or "")


BOOK = """\
name: prove
steps:
  - id: covered
    kind: assert
    params:
      check: postfix-setting
      container: mx
      compose_path: /srv/docker-compose.yml
      service: postfix
      setting: mynetworks
      expect: {covers: [10.0.3.7]}
"""


def test_a_playbook_uses_a_diagnose_check_as_a_step(tmp_path: Path) -> None:
    book = tmp_path / "book.yml"
    book.write_text(BOOK)
    _, steps = playbook.load(book).bind(Host(name="gw", address="x"), {})
    assert isinstance(steps[0], Assert) and steps[0].check is not None
    assert steps[0].check.p["setting"] == "mynetworks"
    book.write_text(BOOK.replace("      setting: mynetworks", "      setting: mynetworks\n      colour: blue"))
    with pytest.raises(InputError, match=r"book.yml:11: step 'covered' \(assert\) has no parameter 'colour'") as e:
        playbook.load(book)
    assert "assert takes: check, compose_path, container" in str(e.value.hint), e.value.hint  # its check type's names
    book.write_text(BOOK.replace("      setting: mynetworks", "      setting: mynetworks\n      signatures: []"))
    with pytest.raises(InputError, match="has no parameter .signatures."):  # another check type's name is not this one's
        playbook.load(book)


def test_one_facts_object_per_connection_is_what_probes_and_checks_share() -> None:
    t = FakeTransport(name="gw")
    t.expect(["sh", "-c", containers.COMPOSE_PROBE, "sh"], (0, "v2\n", ""))
    assert containers.compose_command(t) == ["docker", "compose"] == containers.compose_command(t)
    assert len(t.ran) == 1, t.ran  # asked once per connection
    assert facts.of(t) is facts.of(t) and facts.of(t).compose_command == ("docker", "compose")
    assert facts.of(FakeTransport(name="other")) is not facts.of(t)


def test_a_read_forgotten_by_another_hosts_thread_meanwhile_is_still_the_answer() -> None:
    """One connection's facts may serve several hosts' threads: another's forget() right after a value is stored
    (here, inside the store itself) must not turn this thread's read into a KeyError."""

    class ForgottenAtOnce(dict[str, Any]):
        def __setitem__(self, key: str, value: Any) -> None:
            super().__setitem__(key, value)
            self.clear()  # what forget() on another thread does between the store and the read back

    t = FakeTransport(name="gw")
    t.expect(["docker", "inspect", "--type", "container", "--", "mx"],
             (0, json.dumps([{"State": {"Running": True, "Status": "running"}}]), ""))
    known = facts.of(t)
    known._inspect = ForgottenAtOnce()
    assert known.running("mx")
