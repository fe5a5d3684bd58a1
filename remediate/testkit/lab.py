"""The project's docker lab as the test kit drives it: where it is, whether it is up, a reset to its broken state,
its hosts (and copies of them running an author's compose project), and the runbooks run against them."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from ruamel.yaml import YAML

from remediate.testkit.host import LabHost
from remediate.testkit.result import Result, run_cli
from remediate.testkit.run import Run

#: The lab's folder (lab/up, lab/reset, lab/inventory.yml): this variable, else a `lab/` above the tests.
LAB_ENV: Final = "REMEDIATE_LAB"
#: Where an author's compose project is copied, one folder each, on the lab's shared filesystem.
PROJECTS: Final = Path("/opt/remediate-testkit")



def find_lab(start: Path) -> Path | None:
    """$REMEDIATE_LAB, else the first `lab/` holding inventory.yml and reset in start or a folder above it."""
    if os.environ.get(LAB_ENV):
        return Path(os.environ[LAB_ENV])
    for folder in (start, *start.parents):
        if (folder / "lab" / "inventory.yml").is_file() and (folder / "lab" / "reset").is_file():
            return folder / "lab"
    return None


def load_inventory(folder: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The lab inventory's common variables and its hosts' own."""
    document = YAML(typ="safe").load((folder / "inventory.yml").read_text())
    hosts = {name: dict(values or {}) for name, values in (document["all"].get("hosts") or {}).items()}
    return dict(document["all"].get("vars") or {}), hosts


def why_not_up(folder: Path | None) -> str | None:
    """None when the lab is there, dockerd answers and every host's sshd listens; else what is missing."""
    if folder is None or not (folder / "inventory.yml").is_file():
        return (f"no lab at {folder}" if folder else "no lab/ found above the tests") + \
            f" (set ${LAB_ENV} to the folder holding remediate's lab/inventory.yml and lab/reset)"
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True,
                                                         check=False).returncode != 0:
        return "dockerd is not running; run `bash lab/up` as root"
    common, hosts = load_inventory(folder)
    for name, values in hosts.items():
        address, port = values.get("ansible_host", name), int(values.get("ansible_port", common.get("ansible_port", 22)))
        try:
            socket.create_connection((address, port), timeout=2).close()
        except OSError:
            return f"{name}'s sshd is not listening on {address}:{port}; run `bash lab/up` as root"
    return None


class Lab:
    """The shared lab, for one test: the hosts it gives, the runbooks it runs, and what it cleans up after."""

    def __init__(self, folder: Path, workdir: Path) -> None:
        self.folder = folder
        self.workdir = workdir
        self.inventory = workdir / "inventory.yml"
        self.state = workdir / "state"  # the CLI's XDG_STATE_HOME: this test's run records alone
        self._common, self._hosts = load_inventory(folder)
        self._projects: list[LabHost] = []
        self._write_inventory()

    @property
    def env(self) -> dict[str, str]:
        return {"XDG_STATE_HOME": str(self.state)}

    def reset(self) -> None:
        """The lab's broken state again, byte for byte (`lab/reset`: a few seconds, no rebuild)."""
        done = subprocess.run(["bash", str(self.folder / "reset")], capture_output=True, text=True, check=False,
                              stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise AssertionError(f"`bash {self.folder / 'reset'}` exited {done.returncode}:\n{done.stdout}{done.stderr}")

    def host(self, name: str, *, compose: Path | str | None = None, vars: Mapping[str, Any] | None = None) -> LabHost:
        """A lab host with its compose project up. With compose=FOLDER, the author's project instead: the folder is
        copied to /opt/remediate-testkit/<its name>/ and brought up from there through `name`'s sshd, as the inventory
        host <its name> (compose_dir set to the copy); vars are added to the host's inventory variables."""
        if name not in self._hosts:
            raise AssertionError(f"no host {name!r} in {self.folder / 'inventory.yml'}; it has {', '.join(self._hosts)}")
        values = {**self._hosts[name], **(vars or {})}
        if compose is not None:
            name, values = self._copy_project(Path(compose), values)
        self._hosts[name] = values
        self._write_inventory()
        host = LabHost(name, {**self._common, **values}, self.env)
        if compose is not None:
            self._projects.append(host)
        host.up()
        return host

    def _copy_project(self, source: Path, values: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if not (source / "docker-compose.yml").is_file():
            raise AssertionError(f"compose={source}: no docker-compose.yml in that folder")
        project = re.sub(r"[^a-z0-9-]", "-", source.resolve().name.lower()).strip("-") or "project"
        if project in self._hosts:
            raise AssertionError(f"compose={source}: {project!r} is already a host of the lab; rename the folder")
        target = PROJECTS / project
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)
        os.chmod(target, 0o755)
        return project, {**values, "compose_dir": str(target)}

    def runbook(self, playbook: str | Path, host: LabHost, *, vars: Mapping[str, Any] | None = None,
                watch: Iterable[str] = ()) -> Run:
        """A runbook (a name on the search path, an installed package's playbook, or a path) bound to a host, with
        its -e variables; watch: more files whose bytes the rollback must give back (the plan's files always are)."""
        return Run(self, str(playbook), host, dict(vars or {}), tuple(watch))

    def remediate(self, *args: str, inventory: bool = True, timeout: float = 600) -> Result:
        """The real CLI, with --json, this test's state folder and (unless inventory=False) the lab's inventory."""
        where = ("-i", str(self.inventory)) if inventory else ()
        return run_cli((*args, *where), env=self.env, timeout=timeout)

    def close(self) -> None:
        """Take down the authors' compose projects this test started, and remove their copies."""
        for host in self._projects:
            try:
                host.compose("down", "-v", "--remove-orphans")
            finally:
                shutil.rmtree(host.compose_dir, ignore_errors=True)
        self._projects.clear()
        if PROJECTS.is_dir() and not any(PROJECTS.iterdir()):
            PROJECTS.rmdir()

    def _write_inventory(self) -> None:
        """The lab's inventory with this test's hosts and variables: what every CLI run of the test reads."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        yaml = YAML(typ="safe")
        yaml.default_flow_style = False
        with self.inventory.open("w") as f:
            yaml.dump({"all": {"vars": self._common, "hosts": self._hosts}}, f)
