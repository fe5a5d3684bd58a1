"""compose-restart and the image `up -d` runs: the plan binds it by ID, a moved tag is refused before `down`, and a
rollback that cannot bring the old image back says so."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import replace
from pathlib import Path

import pytest

from remediate.engine import identity, journal
from remediate.engine.context import Context, TransportPool
from remediate.errors import InputError, NotReversed, StepError
from remediate.inputs.inventory import Host
from remediate.kinds.compose_restart import ComposeRestart
from remediate.probes.containers import COMPOSE_PROBE

from .fakes import FakeTransport
from .test_steps import IMAGE_ID, PROJECT_PS, container, ctx_for, host, restart

__all__ = ["host"]  # test_steps' fixture, used by gw
INSPECT = ["docker", "inspect", "--type", "container", "--", "pf"]
BASE = ["docker", "compose", "--project-directory", "/srv/mail", "-f", "/srv/mail/docker-compose.yml"]


def running(image: str) -> tuple[int, str, str]:
    """pf, running image `image` with an environment the file no longer sets (so a restart is planned)."""
    found = json.loads(container(["PATH=/bin", "RELAYHOST=x", "POSTFIX_relay_transport=lmtp:[h]:2525"]))
    found[0]["Image"] = image
    return 0, json.dumps(found), ""


@pytest.fixture
def gw(host: FakeTransport) -> FakeTransport:
    host.expect(["sh", "-c", COMPOSE_PROBE, "sh"], (0, "v2\n", ""))
    host.expect(INSPECT, running("sha256:1"))
    host.expect(["docker", "image", "inspect", "--", "sha256:2"], (0, json.dumps([{"Config": {"Env": []}}]), ""))
    for action in (["config", "-q"], ["down"], ["up", "-d"]):
        host.expect([*BASE, *action])
    return host


def allowing(step: ComposeRestart) -> ComposeRestart:
    return ComposeRestart(replace(step.spec, params={**step.spec.params, "image_change": "allow"}))


def stopped(t: FakeTransport) -> bool:
    return any(c.endswith((" down", " up -d")) for c in t.ran)


def test_the_plan_binds_the_image_by_id_so_a_moved_tag_is_another_plan(gw: FakeTransport) -> None:
    plan = restart().plan(ctx_for(gw))
    assert plan.changed and plan.data["images"] == {"postfix": ["img", "sha256:1"]}
    gw.expect(IMAGE_ID, (0, "sha256:2\n", ""))
    gw.expect(INSPECT, running("sha256:2"))  # the container too: the same software, another image ID
    moved = restart().plan(ctx_for(gw))
    assert moved.data["images"] == {"postfix": ["img", "sha256:2"]}
    assert identity.plan_entry(plan) != identity.plan_entry(moved)


def test_a_restart_that_would_change_the_image_fails_its_plan_unless_allowed(gw: FakeTransport) -> None:
    gw.expect(IMAGE_ID, (0, "sha256:2\n", ""))  # pulled since pf started: `up -d` would run the new image
    with pytest.raises(StepError, match="pf runs image 1, but img names 2 on gw now: `up -d` would change the "
                                        "software") as e:
        restart().plan(ctx_for(gw))
    assert "image_change: allow" in (e.value.hint or "")
    plan = allowing(restart()).plan(ctx_for(gw))
    assert "`up -d` will run img as 2, not the 1 pf runs now (image_change: allow)" in plan.reason
    assert not stopped(gw)


def test_a_tag_moved_after_the_plan_is_refused_before_down(gw: FakeTransport) -> None:
    step = allowing(restart())  # even where a change of image is allowed, it must be the one reviewed
    plan = step.plan(ctx_for(gw))
    gw.expect(IMAGE_ID, (0, "sha256:3\n", ""))
    with pytest.raises(StepError, match="img names image 3 on gw now, but the plan was reviewed when img named 1; "
                                        "nothing was stopped"):
        step.apply(ctx_for(gw), plan)
    assert not stopped(gw)


def test_a_container_recreated_from_another_image_after_the_plan_is_refused_before_down(gw: FakeTransport) -> None:
    plan = restart().plan(ctx_for(gw))
    gw.expect(INSPECT, running("sha256:0"))  # someone ran an older image meanwhile; the tag still names sha256:1
    with pytest.raises(StepError, match="pf runs image 0, but img names 1 now: `up -d` would change the software"):
        restart().apply(ctx_for(gw), plan)
    assert not stopped(gw)
    allowing(restart()).apply(ctx_for(gw), plan)  # allowed: it runs the image the plan named
    assert stopped(gw)


def test_the_image_as_planned_is_applied(gw: FakeTransport) -> None:
    plan = restart().plan(ctx_for(gw))
    restart().apply(ctx_for(gw), plan)
    assert gw.ran[-2:] == [" ".join(BASE + ["down"]), " ".join(BASE + ["up", "-d"])]


def applied_restart(gw: FakeTransport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[journal.Journal, Context]:
    """A run's journal whose restart was applied (the container ran image sha256:1 before), and the context a
    `rollback` of it passes the step; readiness answers at once."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.setattr(ComposeRestart, "_ready", lambda self, ctx, listener, seconds: "ready")
    j = journal.Journal.start(run_id="20261206T120000Z-abcdef", host="gw", address="x", playbook="p",
                              playbook_path="/p.yml", variables={},
                              steps=[journal.StepRecord("restart", "compose-restart", "host", {}, "applied")])
    j.update_step("restart", durable=True, compose=BASE, down_started=True, image_before="sha256:1")
    return j, Context(host=Host(name="gw", address="x"), vars={}, run_id="R", pool=TransportPool(None, lambda h: gw),
                      journal=j)


def test_a_rollback_that_cannot_bring_the_old_image_back_says_it_did_not_reverse_the_restart(
        gw: FakeTransport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the run's own journal, as `rollback` passes it: the record the rollback's restart updates is the one
    that holds the image the container ran before the run, so it is read first and never overwritten."""
    j, ctx = applied_restart(gw, tmp_path, monkeypatch)
    gw.expect(INSPECT, running("sha256:2"))  # image_change: allow ran sha256:2; the tag still names it
    gw.expect(IMAGE_ID, (0, "sha256:2\n", ""))
    for _ in range(2):  # and again: the journal still says what the container ran before the run
        with pytest.raises(NotReversed, match="re-created pf from the restored /srv/mail/docker-compose.yml .*, but it "
                                              "runs image 2, not the 1 it ran before the run"):
            restart().rollback(ctx, j.step("restart"))
        assert j.step("restart")["image_before"] == "sha256:1"
    gw.expect(INSPECT, running("sha256:1"))  # the old image tagged again: the rollback's restart reverses it
    gw.expect(IMAGE_ID, (0, "sha256:1\n", ""))
    assert restart().rollback(ctx, j.step("restart")).endswith("; ready")


@pytest.mark.parametrize(("service", "why"), [
    ("    image: ${IMG:-${REGISTRY}/boky/postfix}:v4\n", "which image `up -d` runs for service 'postfix' cannot be told"),
    ("    image: img\n    pull_policy: always\n", "has pull_policy: always, so `up -d` pulls or builds its image anew"),
    ("    build: .\n    pull_policy: build\n", "has pull_policy: build"),
    ("    environment: [A=1]\n", "has neither image: nor build:"),
])
def test_an_image_that_cannot_be_bound_fails_the_plan(gw: FakeTransport, service: str, why: str) -> None:
    gw.put("/srv/mail/docker-compose.yml", "services:\n  postfix:\n" + service)
    with pytest.raises(StepError, match=re.escape(why)):
        restart().plan(ctx_for(gw))
    assert not stopped(gw)


def test_a_built_service_binds_the_image_compose_built(gw: FakeTransport) -> None:
    gw.put("/srv/mail/docker-compose.yml", "services:\n  postfix:\n    build: .\n")
    gw.expect(["docker", "image", "inspect", "--format", "{{.Id}}", "--", "mail-postfix"], (0, "sha256:1\n", ""))
    assert restart().plan(ctx_for(gw)).data["images"] == {"postfix": ["mail-postfix", "sha256:1"]}
    gw.expect(["docker", "image", "inspect", "--format", "{{.Id}}", "--", "mail-postfix"], (0, "sha256:7\n", ""))
    with pytest.raises(StepError, match="pf runs image 1, but mail-postfix names 7"):  # `compose build` since it started
        restart().plan(ctx_for(gw))


def test_an_image_the_host_lacks_fails_the_plan_and_a_docker_that_cannot_answer_is_not_a_missing_image(
        gw: FakeTransport) -> None:
    gw.expect(IMAGE_ID, (1, "", "Error response from daemon: No such image: img:latest\n"))
    with pytest.raises(StepError, match="image img of service 'postfix' is not on gw; `up -d` would pull it after "
                                        "`down`, so nothing was changed"):
        restart().plan(ctx_for(gw))
    gw.expect(IMAGE_ID, (1, "", "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker "
                                "daemon running?\n"))
    with pytest.raises(StepError, match="gw: `docker image inspect img` failed: Cannot connect to the Docker daemon"):
        restart().plan(ctx_for(gw))
    assert not stopped(gw)


SIDECAR = ("  dkim:\n    image: dkim:1\n  debug:\n    image: busybox\n    pull_policy: always\n    profiles: [debug]\n")
DKIM_ID = ["docker", "image", "inspect", "--format", "{{.Id}}", "--", "dkim:1"]


def test_every_service_down_and_up_restart_is_bound_not_only_the_named_one(gw: FakeTransport) -> None:
    """`down` and `up -d` act on the whole project: a sidecar's moved tag would also run unreviewed software. A
    service behind a profile `up -d` does not start (debug) is not bound; one .env's COMPOSE_PROFILES names is."""
    gw.put("/srv/mail/docker-compose.yml", gw.files["/srv/mail/docker-compose.yml"].content.decode() + SIDECAR)
    gw.expect(DKIM_ID, (0, "sha256:d1\n", ""))
    gw.expect(PROJECT_PS, (0, "c1\nc2\n", ""))
    inspect_both = ["docker", "inspect", "--type", "container", "--format",
                    '{{index .Config.Labels "com.docker.compose.service"}} {{.Image}}', "--", "c1", "c2"]
    gw.expect(inspect_both, (0, "postfix sha256:1\ndkim sha256:d1\n", ""))
    plan = restart().plan(ctx_for(gw))
    assert plan.data["images"] == {"postfix": ["img", "sha256:1"], "dkim": ["dkim:1", "sha256:d1"]}
    gw.expect(DKIM_ID, (0, "sha256:d2\n", ""))  # a pull of dkim:1 since its container started
    with pytest.raises(StepError, match="the container of service 'dkim' runs image d1, but dkim:1 names d2 on gw now: "
                                        "`up -d` would change the software"):
        restart().plan(ctx_for(gw))
    gw.expect(DKIM_ID, (0, "sha256:d1\n", ""))
    restart().plan(ctx_for(gw))  # the debug service (pull_policy: always) is not started: nothing to bind
    gw.put("/srv/mail/.env", "COMPOSE_PROFILES=debug\n")
    with pytest.raises(StepError, match="service 'debug' has pull_policy: always"):
        restart().plan(ctx_for(gw))
    assert not stopped(gw)


def test_a_built_service_on_a_docker_compose_binary_binds_whichever_name_compose_built(gw: FakeTransport) -> None:
    """docker-compose may be v1 (project_service) or a standalone v2 (project-service): the one image there is the
    one `up -d` runs; two different ones cannot be told apart, and are refused."""
    gw.expect(["sh", "-c", COMPOSE_PROBE, "sh"], (0, "v1\n", ""))
    gw.put("/srv/mail/docker-compose.yml", "services:\n  postfix:\n    build: .\n")
    by_name = {name: ["docker", "image", "inspect", "--format", "{{.Id}}", "--", name]
               for name in ("mail_postfix", "mail-postfix")}
    gw.expect(by_name["mail_postfix"], (1, "", "Error: No such image: mail_postfix\n"))
    gw.expect(by_name["mail-postfix"], (0, "sha256:1\n", ""))
    assert restart().plan(ctx_for(gw)).data["images"] == {"postfix": ["mail-postfix", "sha256:1"]}
    gw.expect(by_name["mail_postfix"], (0, "sha256:9\n", ""))
    with pytest.raises(StepError, match="both mail_postfix and mail-postfix are on gw"):
        restart().plan(ctx_for(gw))


def with_services(t: FakeTransport, extra: str) -> None:
    t.put("/srv/mail/docker-compose.yml", t.files["/srv/mail/docker-compose.yml"].content.decode() + extra)


def image_of(name: str) -> list[str]:
    return ["docker", "image", "inspect", "--format", "{{.Id}}", "--", name]


def project_runs(t: FakeTransport, project: str, lines: str) -> None:
    """The project's own containers (c1...) and, per line, the service one runs and its image."""
    ids = [f"c{i}" for i in range(1, lines.count("\n") + 1)]
    t.expect([*PROJECT_PS[:5], f"label=com.docker.compose.project={project}", *PROJECT_PS[6:]],
             (0, "".join(f"{i}\n" for i in ids), ""))
    t.expect(["docker", "inspect", "--type", "container", "--format",
              '{{index .Config.Labels "com.docker.compose.service"}} {{.Image}}', "--", *ids], (0, lines, ""))


def test_compose_profiles_star_starts_every_profiled_service(gw: FakeTransport) -> None:
    with_services(gw, "  debug:\n    image: busybox\n    pull_policy: always\n    profiles: [debug]\n")
    gw.put("/srv/mail/.env", "COMPOSE_PROFILES=*\n")
    with pytest.raises(StepError, match="service 'debug' has pull_policy: always"):
        restart().plan(ctx_for(gw))


@pytest.mark.parametrize("envfile", ["TZ\nMAIL_UID=1000\n", 'KEY="-----BEGIN KEY-----\nMIIB\n-----END KEY-----"\n',
                                     "spring.mail.host=mx\n"])
def test_another_services_environment_is_not_read_only_its_image(gw: FakeTransport, envfile: str) -> None:
    """An env_file only the sidecar reads (lines remediate's parser refuses, compose takes) is not this step's: the
    sidecar's image is bound without it. One taking its image from a service it extends: is refused, naming that."""
    with_services(gw, "  dovecot:\n    image: dovecot:2\n    env_file: dovecot.env\n"
                      "  opendkim:\n    extends: {file: common.yml, service: dkim}\n    image: opendkim:2\n")
    gw.put("/srv/mail/dovecot.env", envfile)
    gw.expect(image_of("dovecot:2"), (0, "sha256:v1\n", ""))
    gw.expect(image_of("opendkim:2"), (0, "sha256:k1\n", ""))
    assert restart().plan(ctx_for(gw)).data["images"] == {
        "postfix": ["img", "sha256:1"], "dovecot": ["dovecot:2", "sha256:v1"], "opendkim": ["opendkim:2", "sha256:k1"]}
    with_services(gw, "  rspamd:\n    extends: {file: common.yml, service: filter}\n")
    with pytest.raises(InputError, match="service 'rspamd' takes its image from the service it extends:"):
        restart().plan(ctx_for(gw))


def test_every_replica_is_compared_and_one_off_containers_are_not_the_services(gw: FakeTransport) -> None:
    """A replica still on the old image is a change `up -d` makes; `compose run`'s one-off containers are left out
    by the label compose gives them (the command asks docker for the services' own containers only)."""
    with_services(gw, "  dkim:\n    image: dkim:1\n    scale: 2\n  certbot:\n    image: certbot\n")
    gw.expect(image_of("dkim:1"), (0, "sha256:d2\n", ""))
    gw.expect(image_of("certbot"), (0, "sha256:c1\n", ""))
    project_runs(gw, "mail", "dkim sha256:d2\ndkim sha256:d1\ncertbot sha256:c1\n")
    with pytest.raises(StepError, match="the container of service 'dkim' runs image d1, but dkim:1 names d2"):
        restart().plan(ctx_for(gw))


def test_the_project_is_the_one_compose_labelled_the_steps_container_with(gw: FakeTransport) -> None:
    """compose named the project otherwise than the folder (`-p`, a name: since removed): its containers are found
    under the label on the step's own container, never silently missed."""
    found = json.loads(running("sha256:1")[1])
    found[0]["Config"]["Labels"] = {"com.docker.compose.project": "mailprod"}
    gw.expect(INSPECT, (0, json.dumps(found), ""))
    with_services(gw, "  dkim:\n    image: dkim:1\n")
    gw.expect(image_of("dkim:1"), (0, "sha256:d2\n", ""))
    project_runs(gw, "mailprod", "postfix sha256:1\ndkim sha256:d1\n")
    with pytest.raises(StepError, match="the container of service 'dkim' runs image d1"):
        restart().plan(ctx_for(gw))


def test_services_sharing_an_image_ask_for_it_once_and_an_image_that_resolves_to_nothing_says_so(
        gw: FakeTransport) -> None:
    with_services(gw, "  worker:\n    image: img\n")
    restart().plan(ctx_for(gw))
    assert gw.ran.count(shlex.join(IMAGE_ID)) == 1
    with_services(gw, "  dkim:\n    image: ${DKIM_IMAGE}\n")
    with pytest.raises(StepError, match=r"image: \$\{DKIM_IMAGE\} of service 'dkim' resolves to nothing"):
        restart().plan(ctx_for(gw))


def test_a_docker_socket_the_login_user_may_not_use_is_said_as_such(gw: FakeTransport) -> None:
    """A hardened host where docker needs become: said as docker's other probes say it, with the become hint."""
    gw.expect(IMAGE_ID, (1, "", "permission denied while trying to connect to the Docker daemon socket at unix:///x\n"))
    with pytest.raises(StepError, match="the login user may not use the docker socket") as e:
        restart().plan(ctx_for(gw))
    assert "ansible_become" in (e.value.hint or "")


def with_id(reply: tuple[int, str, str], container_id: str, running: bool = True) -> tuple[int, str, str]:
    found = json.loads(reply[1])
    found[0]["Id"], found[0]["State"] = container_id, {"Running": running, "Status": "running" if running else "exited"}
    return 0, json.dumps(found), ""


#: pf as the restored file (test_steps.COMPOSE) sets it; two containers' IDs.
AS_RESTORED = (0, container(["PATH=/bin", "POSTFIX_relay_transport=lmtp:[h]:2525"]), "")
A, B = "a" * 64, "b" * 64


@pytest.mark.parametrize(("now", "again"), [
    (with_id(AS_RESTORED, B), False),  # re-created by the cut-short attempt: not stopped again
    (with_id(AS_RESTORED, A), True),  # the container the undo was to replace: its down never ran
    (with_id(AS_RESTORED, B, running=False), True),  # re-created, but not running
    (with_id(running("sha256:1"), B), True),  # another container, but not with the restored file's environment
    ((1, "", "Error: No such object: pf"), True),  # none: the attempt was cut short between down and up
])
def test_a_rollback_resumed_after_its_restart_does_not_stop_the_service_again(
        gw: FakeTransport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, now: tuple[int, str, str],
        again: bool) -> None:
    j, ctx = applied_restart(gw, tmp_path, monkeypatch)
    gw.expect(INSPECT, with_id(running("sha256:1"), A))  # the apply's container
    first = restart().rollback(ctx, j.step("restart"))  # the attempt that is cut short once its `up -d` has run
    assert first.startswith("re-created pf from the restored") and stopped(gw)
    assert j.step("restart")["undo_replacing"] == A  # recorded before `down`
    gw.ran.clear()
    gw.expect(INSPECT, now)
    second = restart().rollback(ctx, j.step("restart"))  # the retry, from the same record
    assert any(c.endswith(" down") for c in gw.ran) is again and any(c.endswith(" up -d") for c in gw.ran), gw.ran
    assert second.endswith("; ready") and j.step("restart")["undo_replacing"] in (A, B)
    if not again:
        assert second.startswith(f"pf runs with the restored /srv/mail/docker-compose.yml's environment already, in "
                                 f"another container than the {A[:12]} this rollback set out to replace (re-created by "
                                 "an attempt cut short): not stopped again; `up -d` only"), second


@pytest.mark.parametrize("recorded", ["A", {"x": 1}, "b" * 63])
def test_a_recorded_id_that_is_no_container_id_is_not_believed(gw: FakeTransport, recorded: object) -> None:
    gw.expect(INSPECT, with_id(AS_RESTORED, B))
    assert not restart()._undone_before(gw, json.loads(with_id(AS_RESTORED, B)[1])[0], recorded, None)  # type: ignore[arg-type]
