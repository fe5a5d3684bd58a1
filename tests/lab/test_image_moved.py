"""A docker image tag moved under a running container (a `docker pull` without a restart): the fix's restart would run
other software. The real dockerd, compose and the lab's containers: the plan fails, a saved plan is refused, and
nothing on the host changes."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import labctl

POSTFIX_IMAGE = "remediate-lab/postfix:latest"


def image_id(name: str) -> str:
    return labctl.sh("docker", "image", "inspect", "--format", "{{.Id}}", "--", name).stdout.strip()


@pytest.fixture
def tag_kept(broken_lab: None) -> Iterator[str]:
    """The postfix image's ID; the tag is put back on it however the test ends."""
    original = image_id(POSTFIX_IMAGE)
    try:
        yield original
    finally:
        subprocess.run(["docker", "tag", original, POSTFIX_IMAGE], check=True)


def moved(original: str) -> str:
    """Point the postfix tag at another image (the lab's dovecot one), as a pull of a newer postfix would."""
    other = image_id("remediate-lab/dovecot:latest")
    assert other != original
    labctl.sh("docker", "tag", other, POSTFIX_IMAGE)
    return other


def test_a_moved_tag_fails_the_plan_and_changes_nothing(tag_kept: str) -> None:
    before = labctl.container()
    other = moved(tag_kept)
    code, events, out = labctl.remediate("plan", "--host", "ec2-mx")
    assert code == 1, out
    short = lambda i: i.removeprefix("sha256:")[:12]  # noqa: E731
    assert f"mailserver-postfix runs image {short(tag_kept)}, but {POSTFIX_IMAGE} names {short(other)}" in out, out
    assert labctl.COMPOSE_FILE.read_bytes() == labctl.pristine_compose()
    assert labctl.container() == before  # not restarted


def test_a_plan_saved_before_the_tag_moved_is_refused_even_where_a_new_image_is_allowed(tag_kept: str,
                                                                                         tmp_path: Path) -> None:
    planfile = tmp_path / "fix.plan"
    code, _, out = labctl.remediate("plan", "--host", "ec2-mx", "--out", str(planfile),
                                    "-e", "restart_image_change=allow")
    assert code == 2, out
    before = labctl.container()
    moved(tag_kept)
    code, _, out = labctl.remediate("apply", str(planfile))
    assert code == 1 and "not as the saved plan saw it" in out, out
    assert labctl.COMPOSE_FILE.read_bytes() == labctl.pristine_compose()
    assert labctl.container() == before
