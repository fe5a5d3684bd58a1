"""What remediate shows never spells out a secret: passphrases, JSON keys, URLs, bearer tokens, the become password."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from remediate import redact
from remediate.cli import app as cli  # the group and its shared helpers (become_password)
from remediate.cli.output import JsonRenderer
from remediate.inputs.inventory import Host

MASK = redact.MASK


@pytest.mark.parametrize(("shown", "masked"), [
    ("RELAYHOST_PASSWORD=correct horse battery staple\nRELAYHOST=[mail]:587",
     f"RELAYHOST_PASSWORD={MASK}\nRELAYHOST=[mail]:587"),
    ("      - SMTP_PASSWORD: correct horse battery staple", f"      - SMTP_PASSWORD: {MASK}"),
    ('PASSWORD="correct horse \\" battery" # set by ops', f'PASSWORD="{MASK}" # set by ops'),
    ("{'password': 'correct horse', 'user': 'relay'}", f"{{'password': '{MASK}', 'user': 'relay'}}"),
])
def test_a_secret_with_spaces_is_masked_to_the_end_of_its_value(shown: str, masked: str) -> None:
    assert redact.text(shown) == masked


@pytest.mark.parametrize(("shown", "masked"), [
    ('{"password": "correct horse", "user": "relay", "api_key": "k-1 2"}',
     f'{{"password": "{MASK}", "user": "relay", "api_key": "{MASK}"}}'),
    ('{"apiKey":"abc","x-api-key" : "def"}', f'{{"apiKey":"{MASK}","x-api-key" : "{MASK}"}}'),
])
def test_json_secret_keys_mask_their_string_values(shown: str, masked: str) -> None:
    assert redact.text(shown) == masked


@pytest.mark.parametrize(("shown", "masked"), [
    ("relayhost = smtp://relay:s3cret@mail.example.com:587/x", f"relayhost = smtp://relay:{MASK}@mail.example.com:587/x"),
    ("REDIS_URL=redis://:pw@cache:6379", f"REDIS_URL=redis://:{MASK}@cache:6379"),
    ("see https://mail.example.com:8443/status@now", "see https://mail.example.com:8443/status@now"),
])
def test_the_password_of_a_url_is_masked_and_its_host_shown(shown: str, masked: str) -> None:
    assert redact.text(shown) == masked


@pytest.mark.parametrize(("shown", "masked"), [
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.x-y_z=", f"Authorization: {MASK}"),
    ("webhook said: bearer eyJhbGciOiJIUzI1NiJ9.e30 rejected", f"webhook said: bearer {MASK} rejected"),
    ("authorization: Basic dXNlcjpjb3JyZWN0IGhvcnNl", f"authorization: {MASK}"),
])
def test_bearer_tokens_and_authorization_headers_are_masked(shown: str, masked: str) -> None:
    assert redact.text(shown) == masked


def test_text_without_a_secret_word_is_returned_as_it_is() -> None:
    text = "relay_transport = lmtp:[10.0.0.5]:2525\nstatus=sent (250 2.0.0 Ok: queued as 4F2A1)\n" * 100
    assert redact.text(text) is text


def test_the_become_password_is_masked_though_sudo_never_asked_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under a NOPASSWD rule the password is never read for sudo; a command that prints it must still not show it."""
    monkeypatch.setenv("REMEDIATE_BECOME_PASSWORD", "Tr0ub4dor&3")
    assert redact.text("sudo said: Tr0ub4dor&3") == f"sudo said: {MASK}"
    shown = io.StringIO()
    JsonRenderer(shown)({"event": "step_failed", "step": "s", "error": "exited 3: Tr0ub4dor&3"})
    assert "Tr0ub4dor" not in shown.getvalue() and MASK in shown.getvalue()
    assert "Tr0ub4dor&3" not in redact._known  # nothing kept once the variable is gone


def test_a_typed_become_password_is_masked_from_the_moment_it_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "interactive", lambda: True)
    monkeypatch.setattr(cli.click, "prompt", lambda *args, **kwargs: "correct-horse-typed")
    try:
        assert cli.become_password(Host(name="h1", address="127.0.0.1")) == "correct-horse-typed"
        assert redact.text("echo correct-horse-typed") == f"echo {MASK}"
    finally:
        redact._known.discard("correct-horse-typed")


def test_a_path_to_a_secret_is_shown_and_a_masked_value_keeps_its_shape() -> None:
    assert redact.text("ansible_ssh_private_key_file=/home/op/.ssh/id_mx db_password=x") == \
        f"ansible_ssh_private_key_file=/home/op/.ssh/id_mx db_password={MASK}"
    assert redact.data({"vault_password_file": "/etc/vault", "db_password": {"value": "x", "from": "host"},
                        "tokens": ["a", ""], "api_key": False}) == \
        {"vault_password_file": "/etc/vault", "db_password": {"value": MASK, "from": MASK}, "tokens": [MASK, ""],
         "api_key": False}


def test_masking_a_long_line_of_secret_words_takes_linear_time() -> None:
    """A command's output is masked on the way to the screen: "tokentoken..." (10 kB) took the former patterns
    minutes, cubic in its length. The child is given a minute; it needs a few milliseconds."""
    script = ("from remediate import redact\nredact.register('pw')\n"
              "for line in ('token' * 2000, 'a.' * 5000 + '://', 'x' * 20000 + 'pw', 'password-' * 2000):\n"
              "    redact.text(line)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
