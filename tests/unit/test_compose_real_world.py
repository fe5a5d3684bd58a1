"""Compose as compose reads it, and refusals that tell the truth (issue #25), on files shaped like real ones.

The corpus (tests/corpus/compose_shapes.py) holds each shape with its outcome; these tests hold what the corpus
cannot: the host's compose and its version, a container docker does not know, the other kinds' shared env_files.
"""

from __future__ import annotations

from typing import Any

import pytest

from remediate.engine.context import Context, TransportPool
from remediate.errors import InputError, StepError
from remediate.inputs.inventory import Host
from remediate.kinds import StepSpec
from remediate.kinds.compose_env import ComposeEnv
from remediate.kinds.env_list_prune import EnvListPrune
from remediate.kinds.relay_transport import RelayTransport
from remediate.mail import compose, resolve
from remediate.probes.containers import COMPOSE_PROBE
from remediate.transport import FileState
from tests.corpus.compose_shapes import BUILT, MAIL_ENV, RELAY_STACK, SHARED_ENV, SHARED_STACK, SPEC_ONLY, SUITE

from .fakes import FakeTransport

ROOT = "/srv/mail"
COMPOSE_FILE = f"{ROOT}/docker-compose.yml"
V1_REFUSAL = ("ERROR: The Compose file '/srv/mail/docker-compose.yml' is invalid because:\n"
              "'name' does not match any of the regexes: '^x-'")


def gateway(files: dict[str, str]) -> FakeTransport:
    t = FakeTransport(name="gw")
    for name, text in files.items():
        t.put(f"{ROOT}/{name}" if not name.startswith("/") else name, text)
    return t


def ctx_for(t: FakeTransport) -> Context:
    return Context(host=Host(name="gw", address="x"), vars={}, run_id="R", pool=TransportPool(None, lambda h: t))


def relay(**params: Any) -> RelayTransport:
    return RelayTransport(StepSpec(id="relay-transport", kind="relay-transport", target="host",
                                   params={"path": COMPOSE_FILE, "service": "postfix", **params}))


def read(t: FakeTransport) -> resolve.ServiceEnv:
    return resolve.read(t.read, COMPOSE_FILE, "postfix")


# 1. The image is resolved as compose resolves it, then matched.

def test_the_image_is_interpolated_from_defaults_and_from_dotenv() -> None:
    assert read(gateway({"docker-compose.yml": RELAY_STACK})).image == "docker.io/boky/postfix:latest-alpine"
    pinned = gateway({"docker-compose.yml": RELAY_STACK, ".env": "POSTFIX_IMAGE_TAG=v4.3.0\n"})
    assert read(pinned).image == "docker.io/boky/postfix:v4.3.0"
    assert read(gateway({"docker-compose.yml": SUITE})).image == "ghcr.io/mailu/postfix:2024.06"


def test_a_vouched_suite_image_is_edited_and_an_unvouched_one_names_what_to_vouch_for() -> None:
    t = gateway({"docker-compose.yml": SUITE})
    with pytest.raises(InputError) as e:
        relay(compose_config=False).plan(ctx_for(t))
    assert e.value.hint and "-e 'postfix_images=[mailu/postfix]'" in e.value.hint
    assert relay(compose_config=False, postfix_images=["mailu/postfix"]).plan(ctx_for(t)).changed


# 4. The cross-check names the compose it ran, its version, and advice that fits it.

def spec_gateway(found: str) -> FakeTransport:
    """A v2-only file whose RELAYHOST comes from .env (so it is cross-checked), on a host with `found` compose."""
    t = gateway({"docker-compose.yml": SPEC_ONLY.replace("RELAYHOST=[10.0.0.5]:2525", "RELAYHOST=${RELAYHOST}"),
                 ".env": "RELAYHOST=[10.0.0.5]:2525\n"})
    t.expect(["sh", "-c", COMPOSE_PROBE, "sh"], (0, found + "\n", ""))
    return t


def test_a_v1_host_that_cannot_read_a_v2_file_says_the_file_needs_compose_v2() -> None:
    t = spec_gateway("v1")
    t.expect(["docker-compose", "--project-directory", ROOT, "-f", COMPOSE_FILE, "config"], (1, "", V1_REFUSAL))
    t.expect(["docker-compose", "version", "--short"], (0, "1.29.2\n", ""))
    with pytest.raises(StepError) as e:
        relay().plan(ctx_for(t))
    message = str(e.value)
    assert message.startswith("gw: docker-compose 1.29.2 (compose v1; `docker compose` (v2) was not found there: "
                              "`docker compose version` fails) cannot read /srv/mail/docker-compose.yml"), message
    assert ("the file needs compose v2: it uses top-level name:, secrets.sasl_password.environment, "
            "services.postfix.healthcheck.start_interval, which compose v1 does not know") in message
    assert "fix the file first" not in message
    assert e.value.hint and "install the docker compose v2 plugin" in e.value.hint


def test_a_v2_host_that_cannot_read_the_file_names_its_version() -> None:
    t = spec_gateway("v2")
    t.expect(["docker", "compose", "--project-directory", ROOT, "-f", COMPOSE_FILE, "config", "--format", "json"],
             (1, "", "service \"postfix\" refers to undefined secret sasl_password: invalid compose project"))
    t.expect(["docker", "compose", "version", "--short"], (0, "2.40.3\n", ""))
    with pytest.raises(StepError, match=r"^gw: docker compose 2.40.3 \(compose v2\) cannot read "
                                        r"/srv/mail/docker-compose.yml: service \"postfix\" refers to undefined secret"):
        relay().plan(ctx_for(t))


def test_what_needs_compose_v2_is_found_in_the_file() -> None:
    assert compose.needs_v2(SPEC_ONLY, "f") == ["top-level name:", "secrets.sasl_password.environment",
                                                "services.postfix.healthcheck.start_interval"]
    assert compose.needs_v2(RELAY_STACK, "f") == []
    assert compose.needs_v2("services:\n  a:\n    env_file:\n      - path: x.env\n        required: false\n", "f") == \
        ["services.a.env_file with path:"]


# 6. A container docker does not know is named as missing, with what to set.

def test_a_missing_container_is_said_to_be_missing_not_silent() -> None:
    t = gateway({"docker-compose.yml": SUITE})
    t.expect(["docker", "logs", "--tail", "2000", "--", "mailserver-postfix"],
             (1, "", "Error response from daemon: No such container: mailserver-postfix"))
    with pytest.raises(InputError) as e:
        relay(compose_config=False, container="mailserver-postfix").plan(ctx_for(t))
    assert "its container mailserver-postfix does not exist (docker: No such container)" in str(e.value)
    assert "shows no 'Applying custom postfix setting:'" not in str(e.value)
    assert e.value.hint and "set postfix_container to the service's container (compose names it mail-postfix-1 " \
                            "(v1: mail_postfix_1))" in e.value.hint


def test_a_container_whose_log_lacks_the_contract_is_said_so() -> None:
    t = gateway({"docker-compose.yml": SUITE})
    t.expect(["docker", "logs", "--tail", "2000", "--", "pf"], (0, "nginx: ready\n", ""))
    with pytest.raises(InputError, match="its container pf shows no 'Applying custom postfix setting:' in its log"):
        relay(compose_config=False, container="pf").plan(ctx_for(t))


def test_a_built_service_whose_container_log_shows_the_contract_is_edited() -> None:
    t = gateway({"docker-compose.yml": BUILT})
    t.expect(["docker", "logs", "--tail", "2000", "--", "pf"],
             (0, "\u2023 INFO  Applying custom postfix setting: myhostname=mx\n", ""))
    assert relay(compose_config=False, container="pf").plan(ctx_for(t)).changed


# 7. The project name compose gives a built image.

@pytest.mark.parametrize(("folder", "dotenv", "name", "project"), [
    ("/srv/mail", "", "", "mail"),
    ("/srv/Mail.Relay", "", "", "mailrelay"),
    ("/srv/mail", "COMPOSE_PROJECT_NAME=edge\n", "name: spec\n", "edge"),
    ("/srv/mail", "", "name: spec\n", "spec"),
])
def test_the_project_name_is_the_one_compose_gives(folder: str, dotenv: str, name: str, project: str) -> None:
    files = {f"{folder}/docker-compose.yml": name + BUILT, **({f"{folder}/.env": dotenv} if dotenv else {})}
    env = resolve.read(lambda p: FileState(p, files[p].encode(), 0o644, 0, 0) if p in files else None,
                       f"{folder}/docker-compose.yml", "postfix")
    assert env.project == project and env.built_images() == (f"{project}-postfix", f"{project}_postfix")


# 3. A shared env_file, with the other kinds that edit one.

SHARED = {"docker-compose.yml": SHARED_STACK, "/srv/_shared/.env": SHARED_ENV + "POSTFIX_relay_domains=a.org old.org\n",
          "mail.env": MAIL_ENV}


def test_a_list_in_a_shared_env_file_is_refused_then_overridden_in_the_service() -> None:
    def prune(mode: str) -> Any:
        return EnvListPrune(StepSpec(id="prune", kind="env-list-prune", target="host",
                                     params={"path": COMPOSE_FILE, "service": "postfix", "key": "POSTFIX_relay_domains",
                                             "remove": ["old.org"], "shared_env_file": mode})).plan(ctx_for(gateway(SHARED)))
    with pytest.raises(InputError, match="/srv/_shared/.env: this env_file of service 'postfix' is outside its project"):
        prune("refuse")
    plan = prune("override")
    assert [f.path for f in plan.files] == [COMPOSE_FILE]
    assert "      - POSTFIX_relay_domains=a.org\n" in plan.files[0].after.decode()
    assert "/srv/_shared/.env is outside the project folder /srv/mail and left alone" in plan.reason
    assert [f.path for f in prune("edit").files] == ["/srv/_shared/.env"]


def test_compose_env_edits_a_shared_file_only_when_asked_and_cannot_unset_by_override() -> None:
    def env_step(mode: str, **params: Any) -> Any:
        return ComposeEnv(StepSpec(id="env", kind="compose-env", target="host",
                                   params={"path": COMPOSE_FILE, "service": "postfix", "shared_env_file": mode,
                                           **params})).plan(ctx_for(gateway(SHARED)))
    with pytest.raises(InputError, match="outside its project folder"):
        env_step("refuse", set={"TZ": "UTC"})
    assert [f.path for f in env_step("override", set={"TZ": "UTC"}).files] == [COMPOSE_FILE]
    with pytest.raises(InputError, match="shared_env_file=override cannot unset TZ"):
        env_step("override", unset=["TZ"])
    with pytest.raises(InputError, match="shared_env_file must be one of refuse, override, edit, not 'yes'"):
        env_step("yes", set={"TZ": "UTC"})
