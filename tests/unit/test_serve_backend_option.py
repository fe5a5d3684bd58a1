"""`remediate serve --backend`: which options reach launch.serve, what is refused before anything starts (Temporal
options without the Temporal backend, half an mTLS pair, a missing SDK), and the API key kept out of sight."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from remediate import redact
from remediate.cli import main as cli
from remediate.errors import InputError, RemediateError
from remediate.serve import launch
from remediate.serve.rules import Rules
from remediate.serve.temporal import launch as temporal_launch
from remediate.serve.temporal.backend import TemporalBackend
from remediate.serve.temporal.options import TemporalOptions

BASE = ("serve", "--rules", "rules.yml")


@pytest.fixture
def launched(monkeypatch: pytest.MonkeyPatch) -> list[launch.Settings]:
    """launch.serve stood in for: the Settings the command line made, and nothing started."""
    seen: list[launch.Settings] = []
    monkeypatch.setattr(launch, "serve", seen.append)
    for name in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_TASK_QUEUE", "TEMPORAL_API_KEY",
                 "TEMPORAL_TLS_CLIENT_CERT_PATH", "TEMPORAL_TLS_CLIENT_KEY_PATH", "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
                 "REMEDIATE_TEMPORAL_HEARTBEAT_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    return seen


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli.cli, [*BASE, *args], env=env)


def test_the_embedded_backend_is_the_default_and_takes_no_temporal_settings(launched: list[launch.Settings]) -> None:
    done = invoke(env={"TEMPORAL_ADDRESS": "elsewhere:7233"})  # set for Temporal's own CLI: ignored, not refused
    assert done.exit_code == 0, done.output
    assert launched[0].backend == "embedded" and launched[0].temporal is None


@pytest.mark.parametrize("option", [["--temporal-address", "t:7233"], ["--temporal-namespace", "prod"],
                                    ["--temporal-task-queue", "q"], ["--temporal-api-key", "k"],
                                    ["--temporal-tls-ca", "ca.pem"], ["--temporal-heartbeat-timeout", "7"]])
def test_temporal_options_without_the_temporal_backend_are_refused(launched: list[launch.Settings],
                                                                    option: list[str]) -> None:
    done = invoke(*option)
    assert done.exit_code != 0 and not launched
    assert f"{option[0]} applies only with --backend temporal" in done.output


def test_the_temporal_backend_takes_its_options_from_flags_and_temporals_own_environment_names(
        launched: list[launch.Settings]) -> None:
    done = invoke("--backend", "temporal", "--temporal-address", "t.example:7233", "--temporal-tls-key", "k.pem",
                  env={"TEMPORAL_NAMESPACE": "prod", "TEMPORAL_TLS_CLIENT_CERT_PATH": "c.pem",
                       "TEMPORAL_TLS_SERVER_CA_CERT_PATH": "ca.pem", "TEMPORAL_API_KEY": "key-0123"})
    assert done.exit_code == 0, done.output
    assert launched[0].backend == "temporal"
    assert launched[0].temporal == TemporalOptions("t.example:7233", "prod", "remediate", Path("c.pem"),
                                                          Path("k.pem"), Path("ca.pem"), "key-0123")
    assert "key-0123" not in repr(launched[0])


def test_defaults_are_temporals_own(launched: list[launch.Settings]) -> None:
    assert invoke("--backend", "temporal").exit_code == 0
    assert launched[0].temporal == TemporalOptions("127.0.0.1:7233", "default", "remediate")


def test_the_heartbeat_timeout_reaches_the_backends_timing(launched: list[launch.Settings]) -> None:
    assert invoke("--backend", "temporal", "--temporal-heartbeat-timeout", "7").exit_code == 0
    assert invoke("--backend", "temporal", env={"REMEDIATE_TEMPORAL_HEARTBEAT_TIMEOUT": "9.5"}).exit_code == 0
    options = [settings.temporal for settings in launched]
    assert [o.heartbeat_timeout for o in options if o] == [7.0, 9.5]
    where = temporal_launch.connection(options[0] or TemporalOptions())
    assert where.heartbeat == 7.0
    backend = TemporalBackend(where, Rules(Path("rules.yml"), ()), Path("inventory.yml"), None)  # type: ignore[arg-type]
    backend.loop.close()  # never started: nothing to stop but its loop and its pool
    backend._executor.shutdown()
    assert backend.timing.heartbeat == 7.0  # the Timing every incident's workflow is opened with


def test_a_heartbeat_timeout_under_a_second_is_refused(launched: list[launch.Settings]) -> None:
    done = invoke("--backend", "temporal", "--temporal-heartbeat-timeout", "0.5")
    assert done.exit_code != 0 and not launched and "--temporal-heartbeat-timeout" in done.output


def test_the_connection_reads_the_tls_files_and_registers_the_api_key(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_bytes(b"CERT")
    (tmp_path / "k.pem").write_bytes(b"KEY")
    where = temporal_launch.connection(TemporalOptions(
        "t:7233", "ns", "q", tmp_path / "c.pem", tmp_path / "k.pem", None, "api-key-4f8a9c"))
    assert (where.tls_cert, where.tls_key, where.tls_ca, where.api_key) == (b"CERT", b"KEY", None, "api-key-4f8a9c")
    assert "api-key-4f8a9c" not in redact.text("Authorization: Bearer api-key-4f8a9c")


def test_half_an_mtls_pair_or_an_unreadable_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_bytes(b"CERT")
    with pytest.raises(InputError, match="go together"):
        temporal_launch.connection(TemporalOptions(tls_cert=tmp_path / "c.pem"))
    with pytest.raises(InputError, match="--temporal-tls-ca .*missing.pem"):
        temporal_launch.connection(TemporalOptions(tls_ca=tmp_path / "missing.pem"))


def test_without_the_temporal_sdk_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m.startswith(("temporalio", "remediate.serve.temporal"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "temporalio", None)  # type: ignore[arg-type]  # what an absent package imports as
    with pytest.raises(RemediateError) as e:
        launch._temporal_launch()
    assert "Temporal SDK" in e.value.message and "pip install 'remediate[temporal]'" in str(e.value.hint)


def test_host_runs_per_hour_reaches_the_temporal_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--host-runs-per-hour is the Temporal backend's limit too (it once kept its own default of 6, silently)."""
    seen: dict[str, Any] = {}

    class Launch:
        connection = staticmethod(temporal_launch.connection)

        @staticmethod
        def serve(*args: Any, **kwargs: Any) -> None:
            seen.update(kwargs)

    (tmp_path / "rules.yml").write_text("rules:\n  - name: a\n    match: {alertname: X}\n    playbook: toy\n")
    (tmp_path / "inventory.yml").write_text("all:\n  hosts:\n    h1:\n      ansible_host: 127.0.0.20\n")
    token = tmp_path / "token"
    token.write_text("t" * 40 + "\n")
    token.chmod(0o600)
    monkeypatch.setattr(launch, "_temporal_launch", lambda: Launch)
    launch.serve(launch.Settings(tmp_path / "rules.yml", tmp_path / "inventory.yml", "127.0.0.21:9", tmp_path / "s",
                                 token, False, 3, 1 << 20, "info", backend="temporal", temporal=TemporalOptions()))
    assert seen["host_runs_per_hour"] == 3
