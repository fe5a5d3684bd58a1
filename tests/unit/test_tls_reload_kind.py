"""tls-reload at the transport seam: a scripted host whose service serves the old certificate until it reloads (or,
when the reload does not take, until its container is re-created)."""

from __future__ import annotations

import base64
import shlex
from typing import Any

import pytest

from remediate.contract.plan import NOTHING_APPLIED
from remediate.engine.context import Context, TransportPool
from remediate.errors import InputError, StepError
from remediate.inputs.inventory import Host
from remediate.kinds import StepSpec
from remediate.kinds.tls_reload import TlsReload
from remediate.probes import facts, tls

from .fakes import FakeTransport
from .test_tls_check import der, fingerprint, make_cert

FILE = "/opt/mx/certs/fullchain.pem"
RELOAD = ["docker", "exec", "--", "mx-postfix", "postfix", "reload"]
RECREATE = ["docker-compose", "--project-directory", "/opt/mx", "-f", "/opt/mx/docker-compose.yml", "up", "-d",
            "--no-deps", "--force-recreate", "postfix"]
PROBE = shlex.join(["python3", "-c", tls.SCRIPT, "10.0.0.5", "25", "smtp", "10", ""])


class Service:
    """The scripted host's Postfix: what it serves, and what makes it read the file again."""

    def __init__(self, reload_takes: bool = True, recreate: bool = True) -> None:
        self.old, self.new = make_cert("mx.lab", 3)[0], make_cert("mx.lab", 90)[0]
        self.serving = self.old
        self.host = FakeTransport(name="mx")
        self.host.put(FILE, self.new)
        self.host.replies[PROBE] = lambda _: (0, f"cert {base64.b64encode(der(self.serving)).decode()}\n", "")
        self.host.replies[shlex.join(RELOAD)] = lambda _: self.reload(reload_takes)
        if recreate:
            self.host.replies[shlex.join(RECREATE)] = lambda _: self.reload(True)

    def reload(self, takes: bool) -> tuple[int, str, str]:
        if takes:
            self.serving = self.new
        return 0, "", ""


def step(**params: Any) -> TlsReload:
    given = {"container": "mx-postfix", "reload": ["postfix", "reload"], "address": "10.0.0.5", "port": 25,
             "starttls": "smtp", "cert_file": FILE, "timeout": 1, **params}
    return TlsReload(StepSpec(id="reload", kind="tls-reload", target="host", params=given, where="book.yml:9"))


def context(service: Service) -> Context:
    facts.of(service.host).compose_command = ("docker-compose",)
    return Context(host=Host(name="mx", address="x"), vars={}, run_id="R",
                   pool=TransportPool(None, lambda h: service.host))


def test_the_plan_names_both_certificates_runs_a_reload_and_changes_no_file() -> None:
    service = Service()
    plan = step().plan(context(service))
    assert plan.changed and not plan.files
    assert plan.commands == ("docker exec -- mx-postfix postfix reload",)
    assert fingerprint(service.old) in plan.reason and fingerprint(service.new) in plan.reason
    assert "changes no file" in plan.reason


def test_a_reload_that_takes_is_verified_and_nothing_is_re_created() -> None:
    service = Service()
    ctx = context(service)
    kind = step(compose_dir="/opt/mx", service="postfix")
    plan = kind.plan(ctx)
    assert plan.commands[1].startswith("only if the reload did not take: docker-compose")
    applied = kind.apply(ctx, plan)
    assert applied.data["how"] == "reload"
    assert "after a reload" in kind.verify(ctx, plan, applied)
    assert shlex.join(RECREATE) not in service.host.ran
    assert not kind.plan(ctx).changed  # again: nothing to do


def test_a_reload_that_does_not_take_escalates_to_re_creating_the_container() -> None:
    service = Service(reload_takes=False)
    ctx = context(service)
    kind = step(compose_dir="/opt/mx", service="postfix")
    applied = kind.apply(ctx, kind.plan(ctx))
    assert applied.data["how"] == "re-created"
    assert service.host.ran.index(shlex.join(RELOAD)) < service.host.ran.index(shlex.join(RECREATE))


def test_without_compose_a_reload_that_does_not_take_fails_naming_both() -> None:
    service = Service(reload_takes=False, recreate=False)
    ctx = context(service)
    kind = step()
    with pytest.raises(StepError, match=f"not {FILE}'s sha256 {fingerprint(service.new)}"):
        kind.apply(ctx, kind.plan(ctx))
    with pytest.raises(StepError, match="serves sha256 " + fingerprint(service.old)):
        kind.verify(ctx, kind.plan(ctx), NOTHING_APPLIED)
    assert "nothing to undo" in kind.rollback(ctx, {})


def test_compose_dir_without_service_is_refused_with_the_place() -> None:
    with pytest.raises(InputError, match=r"book.yml:9: step 'reload': give compose_dir and service together"):
        step(compose_dir="/opt/mx")
