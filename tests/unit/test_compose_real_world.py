"""Compose as compose reads it, and refusals that tell the truth (issue #25), on files shaped like real ones.

The corpus (tests/corpus/compose_shapes.py) holds each shape with its outcome; these tests hold what the corpus
cannot: the host's compose and its version, a container docker does not know, the other kinds' shared env_files.
"""

from __future__ import annotations

from typing import Any

import pytest

from remediate import resolve
from remediate.context import Context, TransportPool
from remediate.errors import InputError
from remediate.inventory import Host
from remediate.steps import StepSpec
from remediate.steps.relay_transport import RelayTransport
from remediate.transport import FileState
from tests.corpus.compose_shapes import BUILT, RELAY_STACK, SUITE

from .fakes import FakeTransport

ROOT = "/srv/mail"
COMPOSE_FILE = f"{ROOT}/docker-compose.yml"


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
        relay(compose_config=False).check(ctx_for(t))
    assert e.value.hint and "-e 'postfix_images=[mailu/postfix]'" in e.value.hint
    assert relay(compose_config=False, postfix_images=["mailu/postfix"]).check(ctx_for(t)).changed


# 6. A container docker does not know is named as missing, with what to set.

def test_a_missing_container_is_said_to_be_missing_not_silent() -> None:
    t = gateway({"docker-compose.yml": SUITE})
    t.expect(["docker", "logs", "--tail", "2000", "--", "mailserver-postfix"],
             (1, "", "Error response from daemon: No such container: mailserver-postfix"))
    with pytest.raises(InputError) as e:
        relay(compose_config=False, container="mailserver-postfix").check(ctx_for(t))
    assert "its container mailserver-postfix does not exist (docker: No such container)" in str(e.value)
    assert "shows no 'Applying custom postfix setting:'" not in str(e.value)
    assert e.value.hint and "set postfix_container to the service's container (compose names it mail-postfix-1 " \
                            "(v1: mail_postfix_1))" in e.value.hint


def test_a_container_whose_log_lacks_the_contract_is_said_so() -> None:
    t = gateway({"docker-compose.yml": SUITE})
    t.expect(["docker", "logs", "--tail", "2000", "--", "pf"], (0, "nginx: ready\n", ""))
    with pytest.raises(InputError, match="its container pf shows no 'Applying custom postfix setting:' in its log"):
        relay(compose_config=False, container="pf").check(ctx_for(t))


def test_a_built_service_whose_container_log_shows_the_contract_is_edited() -> None:
    t = gateway({"docker-compose.yml": BUILT})
    t.expect(["docker", "logs", "--tail", "2000", "--", "pf"],
             (0, "\u2023 INFO  Applying custom postfix setting: myhostname=mx\n", ""))
    assert relay(compose_config=False, container="pf").check(ctx_for(t)).changed


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
