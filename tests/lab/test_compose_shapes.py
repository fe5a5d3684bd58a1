"""The corpus against compose itself, and the env_file variant of the incident fixed end to end."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from remediate import resolve
from remediate.transport import FileState
from tests.corpus.compose_shapes import SHAPES, Shape
from tests.unit.test_compose_corpus import ROOT, host_with, relay_step

from . import labctl

ENVFILE_DIR = Path("/opt/mailserver-envfile")
ENVFILE_CONTAINER = "mailserver-postfix-envfile"
EDITS = [s for s in SHAPES if s.outcome == "edit"]


def compose_env(folder: Path) -> dict[str, str | None]:
    """What docker-compose itself resolves the postfix service's environment to (no shell variables)."""
    done = subprocess.run(["docker-compose", "--project-directory", str(folder), "-f", str(folder / "docker-compose.yml"),
                           "config"], capture_output=True, text=True, env={"PATH": os.environ["PATH"]}, timeout=60)
    if done.returncode != 0:
        pytest.skip(f"this docker-compose cannot read the shape: {done.stderr.strip()[-200:]}")
    env = YAML(typ="safe").load(done.stdout)["services"]["postfix"].get("environment") or {}
    return env if isinstance(env, dict) else dict(item.partition("=")[::2] for item in env)


@pytest.mark.parametrize("shape", EDITS, ids=[s.name for s in EDITS])
def test_compose_resolves_the_original_and_the_edit_as_remediate_does(lab_up: None, tmp_path: Path, shape: Shape) -> None:
    for name, text in shape.files.items():
        (tmp_path / name).write_bytes(text.encode())
    before = compose_env(tmp_path)
    ours = resolve.read(lambda p: FileState(p, (tmp_path / Path(p).name).read_bytes(), 0o644, 0, 0)
                        if (tmp_path / Path(p).name).exists() else None,
                        str(tmp_path / "docker-compose.yml"), "postfix").resolved()
    assert before.get("RELAYHOST") == ours.get("RELAYHOST")
    t = host_with(shape)
    from remediate.context import Context, TransportPool
    from remediate.inventory import Host
    plan = relay_step().check(Context(host=Host(name="gw", address="x"), vars={}, run_id="R",
                                      pool=TransportPool(None, lambda h: t)))
    for change in plan.files:
        (tmp_path / Path(change.path).relative_to(ROOT)).write_bytes(change.after)
    after = compose_env(tmp_path)
    assert after.get("POSTFIX_relay_transport") == shape.resolved and "RELAYHOST" not in after, after


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
