"""The lab comes up from a clone in a private folder (a root home is 0700), and remediate plans from there."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from . import labctl


def test_a_clone_in_a_0700_folder_brings_the_lab_up_and_plans(lab_up: None, tmp_path: Path) -> None:
    home = tmp_path / "operator-home"
    home.mkdir(mode=0o700)
    clone = home / "main"
    subprocess.run(["git", "clone", "-q", str(labctl.LAB.parent), str(clone)], check=True)
    up = subprocess.run(["bash", str(clone / "lab" / "up")], capture_output=True, text=True, timeout=600)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "lab up:" in up.stdout  # said only after a login to every host worked
    done = subprocess.run(["remediate", "plan", "--host", "ec2-mx", "--json", "-i", str(clone / "lab" / "inventory.yml")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert any(e["event"] == "step_planned" and e["status"] == "change" for e in events)
