"""`remediate apply --backend temporal` before Temporal is asked anything: Temporal options without the backend are
refused as serve refuses them, what a rollout cannot carry is refused before it starts, it asks as apply asks (never
without a terminal), and a Temporal that is not there starts nothing and changes nothing. The rollouts themselves:
tests/integration/test_rollout_temporal*.py, against a real Temporal."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from remediate.cli import main as cli
from remediate.errors import EXIT_ERROR, EXIT_OK

from .fakes import FakeTransport


@pytest.fixture(autouse=True)
def no_temporal_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_TASK_QUEUE", "TEMPORAL_API_KEY",
                 "TEMPORAL_TLS_CLIENT_CERT_PATH", "TEMPORAL_TLS_CLIENT_KEY_PATH", "TEMPORAL_TLS_SERVER_CA_CERT_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CI", "true")


def nowhere() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.19", 0))
        return f"127.0.0.19:{s.getsockname()[1]}"  # closed again: nothing listens there


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.cli, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize("option", [["--temporal-address", "t:7233"], ["--temporal-namespace", "prod"],
                                    ["--temporal-task-queue", "q"], ["--temporal-api-key", "k"]])
def test_temporal_options_without_the_temporal_backend_are_refused_and_nothing_is_planned(
        setup: tuple[Path, Path, FakeTransport], option: list[str]) -> None:
    inv, book, fake = setup
    code, out = invoke("apply", "--yes", "-i", str(inv), "-p", str(book), "--host", "h1", *option)
    assert code != EXIT_OK and f"{option[0]} applies only with --backend temporal" in out, out
    assert fake.files["/etc/app.conf"].content == b"old\n" and not fake.history


def test_the_environment_of_temporals_own_cli_does_not_make_a_local_apply_a_rollout(
        setup: tuple[Path, Path, FakeTransport], monkeypatch: pytest.MonkeyPatch) -> None:
    inv, book, fake = setup
    monkeypatch.setenv("TEMPORAL_ADDRESS", nowhere())
    code, out = invoke("apply", "--yes", "-i", str(inv), "-p", str(book), "--host", "h1")
    assert code == EXIT_OK and fake.files["/etc/app.conf"].content == b"new\n", out


@pytest.mark.parametrize("extra", [["--break-lock"], ["saved.plan"]])
def test_what_a_rollout_does_not_take_yet_is_refused(setup: tuple[Path, Path, FakeTransport], extra: list[str]) -> None:
    inv, book, fake = setup
    code, out = invoke("apply", "--yes", "-i", str(inv), "-p", str(book), "--host", "h1", "--backend", "temporal",
                       "--temporal-address", nowhere(), *extra)
    assert code != EXIT_OK and "is not taken with --backend temporal" in out, out
    assert fake.files["/etc/app.conf"].content == b"old\n"


def test_without_yes_and_without_a_terminal_it_refuses_before_starting(setup: tuple[Path, Path, FakeTransport]) -> None:
    inv, book, fake = setup
    code, out = invoke("apply", "-i", str(inv), "-p", str(book), "--host", "h1", "--backend", "temporal",
                       "--temporal-address", nowhere())
    assert code == EXIT_ERROR and "refusing to apply without confirmation" in out and "rollout" not in out, out
    assert "+new" in out  # the plan was shown, as apply shows it
    assert fake.files["/etc/app.conf"].content == b"old\n"


def test_a_secret_given_with_e_cannot_travel_in_a_rollout(setup: tuple[Path, Path, FakeTransport]) -> None:
    inv, book, fake = setup
    book.write_text(book.read_text().replace("{{ wanted }}", "{{ wanted }} {{ api_token }}"))
    code, out = invoke("apply", "--yes", "-i", str(inv), "-p", str(book), "--host", "h1", "--backend", "temporal",
                       "--temporal-address", nowhere(), "-e", "api_token=s3cret-value-123")
    assert code == EXIT_ERROR and "variable api_token is a secret" in out and "cannot travel" in out, out
    assert "s3cret-value-123" not in out and fake.files["/etc/app.conf"].content == b"old\n"


def test_nothing_to_do_needs_no_temporal(setup: tuple[Path, Path, FakeTransport]) -> None:
    inv, book, fake = setup
    fake.put("/etc/app.conf", "new\n")
    code, out = invoke("apply", "--yes", "-i", str(inv), "-p", str(book), "--host", "h1", "--backend", "temporal",
                       "--temporal-address", nowhere())
    assert code == EXIT_OK and "cannot be reached" not in out, out


def test_a_temporal_that_is_not_there_starts_nothing_and_says_so(setup: tuple[Path, Path, FakeTransport]) -> None:
    inv, book, fake = setup
    where = nowhere()
    code, out = invoke("apply", "--yes", "-i", str(inv), "-p", str(book), "--host", "h1", "--backend", "temporal",
                       "--temporal-address", where, "--temporal-api-key", "api-key-never-shown-9c1")
    assert code == EXIT_ERROR and f"Temporal at {where}" in out and "cannot be reached" in out, out
    assert "api-key-never-shown" not in out and fake.files["/etc/app.conf"].content == b"old\n"
    code, out = invoke("rollouts", "--temporal-address", where)
    assert code == EXIT_ERROR and "cannot be reached" in out, out
