"""Step kinds at the transport seam: the commands they would run, and their edits."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from remediate.engine.context import Context, TransportPool
from remediate.errors import InputError
from remediate.inputs.inventory import Host
from remediate.kinds import StepSpec
from remediate.kinds.compose_restart import ComposeRestart
from remediate.kinds.iac import UserDataRelay
from remediate.mail import resolve
from remediate.probes import images
from remediate.probes.containers import COMPOSE_PROBE

from .fakes import FakeTransport

COMPOSE = "services:\n  postfix:\n    image: img\n    environment:\n      - POSTFIX_relay_transport=lmtp:[h]:2525\n"
IMAGE_ID = ["docker", "image", "inspect", "--format", "{{.Id}}", "--", "img"]
PROJECT_PS = ["docker", "ps", "-aq", "--no-trunc", "--filter", "label=com.docker.compose.project=mail", "--filter",
              "label=com.docker.compose.oneoff=False"]


def container(env: list[str]) -> str:
    return json.dumps([{"State": {"Running": True, "Status": "running"}, "Config": {"Env": env}, "Image": "sha256:1"}])


@pytest.fixture
def host() -> FakeTransport:
    t = FakeTransport(name="gw")
    t.put("/srv/mail/docker-compose.yml", COMPOSE)
    t.expect(["docker", "image", "inspect", "--", "sha256:1"], (0, json.dumps([{"Config": {"Env": ["PATH=/bin"]}}]), ""))
    t.expect(IMAGE_ID, (0, "sha256:1\n", ""))  # the tag names the image the container runs
    t.expect(PROJECT_PS, (0, "", ""))  # no other container of the project
    return t


def ctx_for(t: FakeTransport) -> Context:
    return Context(host=Host(name="gw", address="x"), vars={}, run_id="R", pool=TransportPool(None, lambda h: t))


def restart() -> ComposeRestart:
    return ComposeRestart(StepSpec(id="restart", kind="compose-restart", target="host",
                                   params={"dir": "/srv/mail", "service": "postfix", "container": "pf"}))


@pytest.mark.parametrize(("probe", "tool"), [("v2\n", "docker compose"), ("v1\n", "docker-compose")])
def test_compose_v1_and_v2_are_both_driven(host: FakeTransport, probe: str, tool: str) -> None:
    host.expect(["sh", "-c", COMPOSE_PROBE, "sh"], (0, probe, ""))
    host.expect(["docker", "inspect", "--type", "container", "--", "pf"], (0, container(["PATH=/bin", "RELAYHOST=x", "POSTFIX_relay_transport=lmtp:[h]:2525"]), ""))
    plan = restart().plan(ctx_for(host))
    assert plan.reason.startswith("pf still runs with RELAYHOST=x, which the file no longer sets; then wait for SMTP on ")
    assert plan.commands == (f"{tool} --project-directory /srv/mail -f /srv/mail/docker-compose.yml config -q",
                             f"{tool} --project-directory /srv/mail -f /srv/mail/docker-compose.yml down",
                             f"{tool} --project-directory /srv/mail -f /srv/mail/docker-compose.yml up -d")


def test_no_compose_tool_is_a_clear_error(host: FakeTransport) -> None:
    host.expect(["sh", "-c", COMPOSE_PROBE, "sh"], (0, "", ""))
    with pytest.raises(Exception, match="neither `docker compose` nor `docker-compose`"):
        restart().plan(ctx_for(host))


def test_running_container_with_the_files_environment_is_left_alone(host: FakeTransport) -> None:
    host.expect(["sh", "-c", COMPOSE_PROBE, "sh"], (0, "v1\n", ""))
    host.expect(["docker", "inspect", "--type", "container", "--", "pf"],
                (0, container(["PATH=/bin", "POSTFIX_relay_transport=lmtp:[h]:2525"]), ""))
    plan = restart().plan(ctx_for(host))
    assert not plan.changed and "already runs with the environment" in plan.reason


USER_DATA = """#!/bin/bash
cat > /opt/mailserver/docker-compose.yml <<'COMPOSE'
services:
  postfix:
    environment:
      - RELAYHOST=[10.0.0.5]:2525   # old
      - "POSTFIX_relay_domains=a.com, m8088.com"
COMPOSE
"""


def test_user_data_gets_the_same_two_edits(tmp_path: Path) -> None:
    path = tmp_path / "user_data.sh"
    path.write_text(USER_DATA)
    step = UserDataRelay(StepSpec(id="iac", kind="user-data-relay", target="local",
                                  params={"path": str(path), "relay_transport": "lmtp:[10.0.0.5]:2525",
                                          "relay_before": "[10.0.0.5]:2525", "remove_domains": ["m8088.com"]}))
    ctx = Context(host=Host(name="gw", address="x"), vars={}, run_id="R", pool=TransportPool(None, lambda h: None))
    plan = step.plan(ctx)
    assert plan.files[0].after.decode() == USER_DATA.replace(
        "RELAYHOST=[10.0.0.5]:2525", "POSTFIX_relay_transport=lmtp:[10.0.0.5]:2525").replace(", m8088.com", "")
    assert "POSTFIX_relay_domains drops m8088.com" in plan.reason
    path.write_bytes(plan.files[0].after)
    assert not UserDataRelay(step.spec).plan(Context(host=ctx.host, vars={}, run_id="R2", pool=ctx.pool)).changed



SCRIPT = """#!/bin/bash
set -eu
[ -z "$RELAYHOST" ] && RELAYHOST="relay.example.net"
cat > /opt/mail/.env <<ENVFILE
RELAYHOST=${RELAYHOST}
ENVFILE
cat > /opt/mail/docker-compose.yml <<'COMPOSE'
services:
  postfix:
    image: boky/postfix
    environment:
      RELAYHOST: "[10.0.0.5]:2525"
      POSTFIX_relay_domains: a.com, m8088.com
COMPOSE
docker compose up -d
"""


def user_data_step(path: Path, **params: str) -> UserDataRelay:
    return UserDataRelay(StepSpec(id="iac", kind="user-data-relay", target="local",
                                  params={"path": str(path), "relay_transport": "lmtp:[10.0.0.5]:2525",
                                          "relay_before": "[10.0.0.5]:2525", "remove_domains": ["m8088.com"],
                                          **params}))


def local_ctx() -> Context:
    return Context(host=Host(name="gw", address="x"), vars={}, run_id="R",
                   pool=TransportPool(None, lambda h: FakeTransport(name="unused")))


def test_user_data_edits_only_the_compose_heredoc(tmp_path: Path) -> None:
    path = tmp_path / "user_data.sh"
    path.write_text(SCRIPT)
    plan = user_data_step(path).plan(local_ctx())
    # The shell lines and the .env heredoc stay as they are; only the compose heredoc's body changes.
    assert plan.files[0].after.decode() == SCRIPT.replace(
        '      RELAYHOST: "[10.0.0.5]:2525"\n', '      POSTFIX_relay_transport: "lmtp:[10.0.0.5]:2525"\n').replace(
        "a.com, m8088.com", "a.com")


def test_an_unquoted_compose_heredoc_with_shell_variables_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "user_data.sh"
    path.write_text(SCRIPT.replace("<<'COMPOSE'", "<<COMPOSE").replace('"[10.0.0.5]:2525"', "${RELAYHOST}"))
    with pytest.raises(InputError, match="not quoted, so the shell expands"):
        user_data_step(path).plan(local_ctx())


def test_a_relay_compose_resolves_on_the_provisioned_host_cannot_be_checked(tmp_path: Path) -> None:
    path = tmp_path / "user_data.sh"
    path.write_text(SCRIPT.replace('"[10.0.0.5]:2525"', "${RELAYHOST}"))
    with pytest.raises(InputError, match=r":7 \(heredoc writing /opt/mail/docker-compose.yml\): the heredoc's "
                                         r"RELAYHOST=\$\{RELAYHOST\} is known only when compose reads it .* \(which had "
                                         r"\[10.0.0.5\]:2525\)"):
        user_data_step(path).plan(local_ctx())


CORPUS = Path(__file__).parents[1] / "corpus" / "user_data"


def test_a_script_that_runs_the_gateway_with_docker_run_fails_the_plan() -> None:
    with pytest.raises(InputError, match=r"docker_run.sh:6: the relay is set outside a compose heredoc .* cannot keep "
                                         "this script in step"):
        user_data_step(CORPUS / "docker_run.sh").plan(local_ctx())


def test_a_script_that_sets_no_relay_fails_the_plan(tmp_path: Path) -> None:
    path = tmp_path / "user_data.sh"
    path.write_text("#!/bin/bash\ndnf install -y docker\n")
    with pytest.raises(InputError, match=r"writes no compose file in a heredoc and sets no RELAYHOST or "
                                         r"POSTFIX_relay_transport, so it does not describe this host's relay "
                                         r"\(\[10.0.0.5\]:2525\)"):
        user_data_step(path).plan(local_ctx())


def test_a_compose_heredoc_written_through_a_variable_fails_the_plan_naming_the_line() -> None:
    """issue #25: `cat << EOF > $DOCKER_COMPOSE_CONF` was "nothing to do" (exit 0); it cannot be checked."""
    with pytest.raises(InputError) as e:
        user_data_step(CORPUS / "compose_through_a_variable.sh").plan(local_ctx())
    assert str(e.value).startswith(f"{CORPUS / 'compose_through_a_variable.sh'}:11: this heredoc writes to "
                                   "$DOCKER_COMPOSE_CONF, a path the shell knows only when the script runs, and sets "
                                   "the relay (line 20) (and its delimiter is not quoted"), str(e.value)
    assert "cannot tell whether it writes the compose file, so it cannot check it" in str(e.value)


def test_a_script_of_another_host_is_refused_showing_both_relays(host: FakeTransport) -> None:
    """issue #25: handed production's next hop, staging's :3525 became :2525. The host's relay decides."""
    from remediate.kinds.relay_transport import RelayTransport
    host.put("/srv/mail/docker-compose.yml", svc_with("      - RELAYHOST=[10.0.0.5]:2525\n"))
    ctx = ctx_for(host)
    relay = RelayTransport(StepSpec(id="relay-transport", kind="relay-transport", target="host",
                                    params={"path": "/srv/mail/docker-compose.yml", "service": "postfix"}))
    ctx.plans.append(relay.plan(ctx))  # as the runner does: the iac step finds the relay the host had there
    assert ctx.plans[0].outputs["relay_before"] == "[10.0.0.5]:2525"
    iac = UserDataRelay(StepSpec(id="iac", kind="user-data-relay", target="local",
                                 params={"path": str(CORPUS / "staging.sh"), "relay_transport": "lmtp:[10.0.0.5]:2525"}))
    with pytest.raises(InputError) as e:
        iac.plan(ctx)
    assert "staging.sh:7 (heredoc writing /opt/mailserver/docker-compose.yml): the heredoc's RELAYHOST is " \
           "[10.0.0.5]:3525, but the host being fixed had [10.0.0.5]:2525: the script describes another host" in str(e.value)
    plan = UserDataRelay(replace(iac.spec, params={**iac.spec.params, "path": str(CORPUS / "production.sh")})).plan(ctx)
    assert "RELAYHOST=[10.0.0.5]:2525 becomes POSTFIX_relay_transport=lmtp:[10.0.0.5]:2525" in plan.reason


def test_a_script_behind_a_host_fixed_earlier_is_still_brought_in_step(tmp_path: Path) -> None:
    """The host already relays over LMTP (relay_before is its transport); the script still says RELAYHOST."""
    plan = user_data_step(CORPUS / "production.sh", relay_before="lmtp:[10.0.0.5]:2525").plan(local_ctx())
    assert plan.changed
    with pytest.raises(InputError, match="but the host being fixed had lmtp:\\[10.0.0.5\\]:2525"):
        user_data_step(CORPUS / "staging.sh", relay_before="lmtp:[10.0.0.5]:2525").plan(local_ctx())


def test_without_the_hosts_relay_the_script_is_not_rewritten() -> None:
    step = UserDataRelay(StepSpec(id="iac", kind="user-data-relay", target="local",
                                  params={"path": str(CORPUS / "production.sh"), "relay_transport": "lmtp:[10.0.0.5]:2525"}))
    with pytest.raises(InputError, match="the host being fixed had unknown: no relay_before was given"):
        step.plan(local_ctx())


def svc_with(env: str) -> str:
    return f"services:\n  postfix:\n    image: boky/postfix\n    environment:\n{env}"


def test_restart_follows_a_mounted_config_file_an_earlier_step_changes(host: FakeTransport) -> None:
    from remediate.contract.plan import FileChange, Plan
    host.put("/srv/mail/docker-compose.yml", COMPOSE.replace("    environment:", "    volumes:\n      - ./conf:/etc/dovecot/conf.d:ro\n"
                                                           "    environment:"))
    host.expect(["sh", "-c", COMPOSE_PROBE, "sh"], (0, "v2\n", ""))
    host.expect(["docker", "inspect", "--type", "container", "--", "pf"],
                (0, container(["PATH=/bin", "POSTFIX_relay_transport=lmtp:[h]:2525"]), ""))
    ctx = ctx_for(host)
    assert not restart().plan(ctx).changed  # nothing it reads changes: no restart
    edit = FileChange("/srv/mail/conf/10-auth.conf", "gw", b"old\n", b"new\n")
    ctx.plans = [Plan(step_id="auth", kind="file", target="host", reason="r", files=(edit,))]
    plan = restart().plan(ctx)
    assert plan.changed
    assert plan.reason.startswith("/srv/mail/conf/10-auth.conf changes in this run, and pf reads it")


def test_readiness_by_health_and_by_command(host: FakeTransport) -> None:
    from remediate.probes import readiness
    from remediate.probes.waiting import NotYet
    state = {"Running": True, "Status": "running", "Restarting": False, "StartedAt": "2026-11-29T00:00:00Z"}
    for health, proven in (("starting", False), ("healthy", True)):
        host.expect(["docker", "inspect", "--type", "container", "--", "pf"],
                    (0, json.dumps([{"State": {**state, "Health": {"Status": health}}}]), ""))
        if proven:
            assert "docker says healthy" in readiness.ready(host, "health", "pf", None, None)
        else:
            with pytest.raises(NotYet, match="starting"):
                readiness.ready(host, "health", "pf", None, None)
    host.expect(["doveadm", "ping"], (0, "", ""))
    assert "`doveadm ping` exits 0" in readiness.ready(host, "command", "pf", None, ["doveadm", "ping"])


def test_the_restart_looks_for_the_image_as_compose_resolves_it(host: FakeTransport) -> None:
    """An interpolated image (`${POSTFIX_IMAGE:-boky/postfix}:${TAG:-v4}` with TAG in .env) is looked for under the
    name compose gives it: the raw text was looked up, never found, and the apply stopped at the restart."""
    host.put("/srv/mail/docker-compose.yml", "services:\n  postfix:\n    image: ${POSTFIX_IMAGE:-boky/postfix}:${TAG:-v3}\n")
    host.put("/srv/mail/.env", "TAG=v4\n")
    host.expect(["docker", "image", "inspect", "--format", "{{.Id}}", "--", "boky/postfix:v4"], (0, "sha256:1\n", ""))
    env = resolve.read(host.read, "/srv/mail/docker-compose.yml", "postfix")
    assert images.target(host, env, v2=True) == ("boky/postfix:v4", "sha256:1")
