"""The corpus against compose itself, and the env_file variant of the incident fixed end to end.

Each shape is read by docker-compose (v1) when it can, else by docker compose (v2, the plugin lab/up installs for
ec2-mx-v2): never skipped. The compose that read the original must read the edited file too, and resolve it as the
corpus says; a rejection fails the test, naming that compose. Then the refusals of issue #25 through the real
sshd, docker and docker-compose (plan only): a shared env_file, a user_data.sh that cannot be checked or describes
another host, a container that does not exist, a v2-only file on a v1-only host.
"""

from __future__ import annotations

import os
import posixpath
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from remediate.engine.context import Context, TransportPool
from remediate.inputs.inventory import Host
from remediate.mail import resolve
from remediate.transport import FileState
from tests.corpus.compose_shapes import SHAPES, Shape
from tests.unit.test_compose_corpus import ROOT, host_with, relay_step

from . import labctl

ENVFILE_DIR = Path("/opt/mailserver-envfile")
ENVFILE_CONTAINER = "mailserver-postfix-envfile"
EDITS = [s for s in SHAPES if s.outcome == "edit"]
V1 = ("docker-compose (v1)", ["docker-compose"])
V2 = ("docker compose (v2)", ["docker", "compose"])


def config(compose: tuple[str, list[str]], project: Path) -> subprocess.CompletedProcess[str]:
    """`config` of the project as that compose reads it, with no shell variables (as remediate runs it)."""
    env = {"PATH": os.environ["PATH"]}
    if compose is V2:
        plugin = labctl.V2_DOCKER_CONFIG / "cli-plugins" / "docker-compose"
        assert plugin.exists(), f"docker compose v2 is not installed ({plugin}): run `bash lab/up`"
        env["DOCKER_CONFIG"] = str(labctl.V2_DOCKER_CONFIG)
    return subprocess.run([*compose[1], "--project-directory", str(project), "-f", str(project / "docker-compose.yml"),
                           "config"], capture_output=True, text=True, env=env, timeout=60)


def service(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    node: dict[str, Any] = YAML(typ="safe").load(done.stdout)["services"]["postfix"]
    env = node.get("environment") or {}
    node["environment"] = env if isinstance(env, dict) else dict(item.partition("=")[::2] for item in env)
    return node


def reader(path: str) -> FileState | None:
    return FileState(path, Path(path).read_bytes(), 0o644, 0, 0) if Path(path).is_file() else None


@pytest.mark.parametrize("shape", EDITS, ids=[s.name for s in EDITS])
def test_compose_resolves_the_original_and_the_edit_as_remediate_does(lab_up: None, tmp_path: Path, shape: Shape) -> None:
    project = tmp_path / "srv" / "mail"  # the unit tests' /srv/mail, so ../_shared is tmp_path/srv/_shared
    for name, text in shape.files.items():
        (project / name).resolve().parent.mkdir(parents=True, exist_ok=True)
        (project / name).resolve().write_bytes(text.encode())
    v1 = config(V1, project)
    assert (v1.returncode != 0) == shape.v2_only, f"the corpus says v2_only={shape.v2_only}; docker-compose (v1) " \
                                                   f"said: {v1.stderr.strip()[-300:]}"
    compose, done = (V1, v1) if v1.returncode == 0 else (V2, config(V2, project))
    assert done.returncode == 0, f"neither compose reads the original; {compose[0]} said: {done.stderr.strip()[-300:]}"
    before = service(done)
    ours = resolve.read(reader, str(project / "docker-compose.yml"), "postfix")
    assert before["environment"].get("RELAYHOST") == ours.resolved().get("RELAYHOST"), compose[0]
    if ours.image:
        assert before["image"] == ours.image, f"{compose[0]} resolves the image to {before['image']}, remediate to {ours.image}"
    t = host_with(shape)
    plan = relay_step(shape).plan(Context(host=Host(name="gw", address="x"), vars={}, run_id="R",
                                           pool=TransportPool(None, lambda h: t)))
    for change in plan.files:
        (project / posixpath.relpath(change.path, ROOT)).resolve().write_bytes(change.after)
    edited = config(compose, project)
    if edited.returncode != 0:
        pytest.fail(f"{compose[0]} read the original but rejects the edited file: {edited.stderr.strip()[-400:]}")
    after = service(edited)["environment"]
    assert after.get("POSTFIX_relay_transport") == shape.resolved, f"{compose[0]} reads {after}"
    assert after.get("RELAYHOST") == shape.relayhost, f"{compose[0]} reads {after}"
    print(f"{shape.name}: read by {compose[0]}")


def interpolated_image(shape: Shape) -> bool:
    image = [line for line in shape.files["docker-compose.yml"].splitlines() if line.strip().startswith("image:")]
    return bool(image) and "${" in image[-1]


IMAGES = [s for s in SHAPES if interpolated_image(s)]


@pytest.mark.parametrize("shape", IMAGES, ids=[s.name for s in IMAGES])
def test_compose_resolves_the_image_as_remediate_does(lab_up: None, tmp_path: Path, shape: Shape) -> None:
    """Edited or refused, the image remediate matches is the one compose runs (and both refuse an unset ${X:?})."""
    project = tmp_path / "srv" / "mail"
    for name, text in shape.files.items():
        (project / name).resolve().parent.mkdir(parents=True, exist_ok=True)
        (project / name).resolve().write_bytes(text.encode())
    compose, done = V1, config(V1, project)
    if done.returncode != 0:
        compose, done = V2, config(V2, project)
    ours = resolve.read(reader, str(project / "docker-compose.yml"), "postfix")
    if done.returncode != 0:
        assert ours.image_error, f"{compose[0]} refuses the file ({done.stderr.strip()[-200:]}); remediate reads the " \
                                 f"image as {ours.image}"
        return
    assert service(done)["image"] == ours.image, compose[0]


def test_the_env_file_variant_is_fixed_where_relayhost_lives(broken_lab: None) -> None:
    labctl.compose("down")  # ec2-mx's own project, which binds the same address
    done = subprocess.run(["docker-compose", "-p", "mailserver-envfile", "up", "-d"], cwd=ENVFILE_DIR,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    labctl.wait_for(ENVFILE_CONTAINER, "Starting: postfix start-fg")
    compose_before = (ENVFILE_DIR / "docker-compose.yml").read_bytes()
    relay_before = (ENVFILE_DIR / "relay.env").read_bytes()
    assert labctl.BOUNCE in labctl.status_of(labctl.send_mail(container=ENVFILE_CONTAINER), container=ENVFILE_CONTAINER)
    where = ("--host", "ec2-mx", "-e", f"compose_dir={ENVFILE_DIR}", "-e", f"postfix_container={ENVFILE_CONTAINER}")
    code, events, out = labctl.remediate("apply", "--yes", *where)
    assert code == 0, out
    verified = {e["step"]: e["message"] for e in events if e["event"] == "step_verified"}
    assert "Saved" in verified["test-mail"], out
    assert (ENVFILE_DIR / "docker-compose.yml").read_bytes() == compose_before
    assert (ENVFILE_DIR / "relay.env").read_text() == ("# Hand mail for our domains to Dell (mailbox server)\n"
                                                         "POSTFIX_relay_transport=lmtp:[127.0.0.11]:2525\n"
                                                         "POSTFIX_relay_domains=kuma8088.com\n")
    assert "Saved" in labctl.status_of(labctl.send_mail(container=ENVFILE_CONTAINER), container=ENVFILE_CONTAINER)
    code, _, out = labctl.remediate("rollback", "--yes", "--host", "ec2-mx")
    assert code == 0, out
    assert (ENVFILE_DIR / "relay.env").read_bytes() == relay_before


CORPUS_SCRIPTS = Path(__file__).parents[1] / "corpus" / "user_data"
SHARED_GATEWAY = """\
# The gateway's stack; settings common to every stack on the host come from ../_shared/.env
services:
  postfix:
    image: remediate-lab/postfix:latest
    network_mode: host
    env_file:
      - ../_shared/.env
    environment:
      - ALLOWED_SENDER_DOMAINS=kuma8088.com
      - POSTFIX_inet_interfaces=127.0.0.10
"""


def failed(events: list[dict[str, Any]]) -> str:
    """What the run said when it failed (the host's summary, or an error event)."""
    return " | ".join(str(e.get("message") or "") for e in events
                      if e["event"] == "error" or (e["event"] == "summary" and e.get("status") == "error"))


def test_a_shared_env_file_is_refused_by_the_plan_naming_it(broken_lab: None, tmp_path: Path) -> None:
    """Over the real sshd and docker-compose: the fix would change ../_shared/.env, which other stacks read."""
    project, shared = tmp_path / "srv" / "mail", tmp_path / "srv" / "_shared"
    project.mkdir(parents=True)
    shared.mkdir()
    (project / "docker-compose.yml").write_text(SHARED_GATEWAY)
    (shared / ".env").write_text("TZ=Europe/Berlin\nRELAYHOST=[127.0.0.11]:2525\n")
    code, events, out = labctl.remediate("plan", "--host", "ec2-mx", "-e", f"compose_dir={project}")
    assert code == 1, out
    assert f"{shared}/.env: this env_file of service 'postfix' is outside its project folder {project}" in failed(events), out
    assert (shared / ".env").read_text() == "TZ=Europe/Berlin\nRELAYHOST=[127.0.0.11]:2525\n"


@pytest.mark.parametrize(("script", "words"), [
    ("compose_through_a_variable.sh", "compose_through_a_variable.sh:11: this heredoc writes to $DOCKER_COMPOSE_CONF"),
    ("staging.sh", "the heredoc's RELAYHOST is [10.0.0.5]:3525, but the host being fixed had [127.0.0.11]:2525"),
])
def test_a_user_data_it_cannot_check_or_of_another_host_fails_the_plan(broken_lab: None, script: str, words: str) -> None:
    """Never "nothing to do" (exit 0) for a script user-data-relay could not check, nor a rewrite of another host's."""
    code, events, out = labctl.remediate("plan", "--host", "ec2-mx", "-e", f"iac_user_data={CORPUS_SCRIPTS / script}")
    assert code == 1, out
    assert words in failed(events), out


def test_a_container_that_does_not_exist_is_named_as_missing(broken_lab: None) -> None:
    code, events, out = labctl.remediate("plan", "--host", "ec2-mx", "-e", "postfix_container=mailserver-postfix-old")
    assert code == 1, out
    assert "its container mailserver-postfix-old does not exist (docker: No such container)" in failed(events), out
    assert "set postfix_container to the service's container (its container_name: mailserver-postfix)" in out


def test_the_v1_host_says_a_v2_file_needs_compose_v2(broken_lab: None, tmp_path: Path) -> None:
    """ec2-mx has docker-compose 1.29 only: the cross-check names it, its version, and what the file needs."""
    (tmp_path / "docker-compose.yml").write_text("name: mail-edge\n" + SHARED_GATEWAY.replace(
        "    env_file:\n      - ../_shared/.env\n", "").replace("      - POSTFIX_inet_interfaces=127.0.0.10\n",
                                                            "      - POSTFIX_inet_interfaces=127.0.0.10\n"
                                                            "      - RELAYHOST=${RELAYHOST}\n"))
    (tmp_path / ".env").write_text("RELAYHOST=[127.0.0.11]:2525\n")
    code, events, out = labctl.remediate("plan", "--host", "ec2-mx", "-e", f"compose_dir={tmp_path}")
    assert code == 1, out
    said = failed(events)
    assert "ec2-mx: docker-compose 1.29.2 (compose v1; `docker compose` (v2) was not found there" in said, out
    assert "the file needs compose v2: it uses top-level name:" in said, out
