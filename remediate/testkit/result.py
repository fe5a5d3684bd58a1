"""One run of the real CLI: its command line, exit code, JSON events and output, and the failure message built
from them that an author can act on."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

#: How much of a command's output a failure message shows (its end: where the error is).
SHOWN: Final = 6000


@dataclass(frozen=True)
class Result:
    """What `remediate ... --json` did: its exit code, its events (one JSON object a line) and all it printed."""

    argv: tuple[str, ...]
    code: int
    events: tuple[dict[str, Any], ...]
    output: str

    @property
    def command(self) -> str:
        return shlex.join(self.argv)

    def of(self, event: str) -> list[dict[str, Any]]:
        """The events of one type (step_planned, step_failed, check, ...), in their order."""
        return [e for e in self.events if e.get("event") == event]

    def planned(self) -> dict[str, dict[str, Any]]:
        """Each step's step_planned event, by step id."""
        return {e["step"]: e for e in self.of("step_planned")}

    def steps(self, event: str) -> list[str]:
        """The ids of the steps that have this event (step_applied, step_rolled_back, ...), in order."""
        return [str(e["step"]) for e in self.of(event)]

    def diff(self, step: str) -> str:
        """The unified diffs step's plan shows, joined."""
        return "".join(d["diff"] for d in self.planned().get(step, {}).get("diffs", []))

    def paths(self) -> list[str]:
        """Every file the plan's diffs name, in order, once."""
        found = [str(d["path"]) for e in self.of("step_planned") for d in e.get("diffs", [])]
        return list(dict.fromkeys(found))

    def failure(self, expected: str) -> str:
        """The message for a test that expected something else: the command, its exit code, its output's end."""
        out = self.output if len(self.output) <= SHOWN else "...\n" + self.output[-SHOWN:]
        return f"{expected}\n  command: {self.command}\n  exit code: {self.code}\n  output:\n{out.rstrip()}"

    def expect(self, code: int, what: str) -> Result:
        """This result, if the command exited `code`; else fail saying what was expected."""
        if self.code != code:
            raise AssertionError(self.failure(f"{what}: expected exit code {code}, got {self.code}"))
        return self


def executable() -> str:
    """The `remediate` of the environment pytest runs in (beside its python, even when that venv is not on PATH),
    else the first on PATH."""
    beside = Path(sys.executable).parent / "remediate"
    return str(beside) if beside.is_file() else shutil.which("remediate") or "remediate"


def run_cli(args: Sequence[str], *, env: Mapping[str, str], timeout: float) -> Result:
    """Run `remediate ARGS --json` and read its events."""
    argv = ("remediate", *args, "--json")
    try:
        done = subprocess.run((executable(), *argv[1:]), capture_output=True, text=True, timeout=timeout, env={**os.environ, **env},
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as e:
        printed = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        raise AssertionError(f"`{shlex.join(argv)}` did not end within {timeout:.0f} s; it printed:\n{printed}") from e
    events = []
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                pass
    return Result(argv, done.returncode, tuple(events), done.stdout + done.stderr)
