"""Bad input against the real lab: a clear error naming the file:line or host, and nothing changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import labctl


def unchanged(action) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    before = (labctl.COMPOSE_FILE.read_bytes(), labctl.container())
    code, _, out = action()
    assert (labctl.COMPOSE_FILE.read_bytes(), labctl.container()) == before
    assert not Path("/opt/mailserver/.remediate").exists()
    return code, out


@pytest.mark.parametrize(("content", "words"), [
    (b"services:\n  postfix:\n    environment:\n      - A=1\n     - B: [\n", "/opt/mailserver/docker-compose.yml:"),
    (b"services:\x00\x01\x02binary", "binary"),
    (b"# " + b"x" * (1024 * 1024 + 10) + b"\n", "more than 1048576 is refused"),
    (b"services:\n  web:\n    image: nginx\n", "no service 'postfix'"),
], ids=["malformed", "binary", "huge", "no-postfix-service"])
def test_bad_compose_files_are_refused(broken_lab: None, content: bytes, words: str) -> None:
    labctl.COMPOSE_FILE.write_bytes(content)
    code, out = unchanged(lambda: labctl.remediate("apply", "--yes", "--host", "ec2-mx"))
    assert code == 1, out
    assert words in out


def test_shell_metacharacters_stay_data(broken_lab: None) -> None:
    target = Path("/tmp/pwned")
    target.unlink(missing_ok=True)
    code, out = unchanged(lambda: labctl.remediate(
        "plan", "--host", "ec2-mx", "-e", "compose_dir=/opt/mailserver; touch /tmp/pwned"))
    assert code == 1 and "does not exist" in out
    code, _, out = labctl.remediate("apply", "--yes", "--host", "ec2-mx", "-e", "test_sender=x$(touch /tmp/pwned)")
    assert not target.exists()


def test_unknown_host_and_bad_extra_touch_nothing(broken_lab: None) -> None:
    code, out = unchanged(lambda: labctl.remediate("apply", "--yes", "--host", "ec2-mxx"))
    assert code == 1 and "no host or group named 'ec2-mxx'" in out
    code, out = unchanged(lambda: labctl.remediate("apply", "--yes", "--host", "ec2-mx", "-e", "lmtp_port"))
    assert code == 1 and "expected key=value" in out
    code, out = unchanged(lambda: labctl.remediate("apply", "--yes", "--host", "ec2-mx", "-e", "lmtp_port=many"))
    assert code == 1 and "lmtp_port" in out and "must be a number" in out
