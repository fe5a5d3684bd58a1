"""The fleet benchmark: the same 5-operation remediation on N hosts by remediate, pyinfra, ansible-core and a bare
paramiko script, each from its own venv, against private sshds on 127.0.1.x (16 listen addresses per sshd).

    python bench/fleet/fleet.py [--sizes 1,20,100] [--rounds 3]

Per size, round by round and tool by tool (the order rotates each round): reset every host, first run, check
every host, no-op rerun, check again. remediate runs twice per round: with its human output (`remediate`, the one
the goals hold for: what people run) and with `--json` (`remediate-json`). ansible-core gets a fresh ControlPersist
socket folder each round, so that no round reuses the previous round's connections (its no-op run reuses its first
run's, as two runs a minute apart would). The paramiko script sets TCP_NODELAY and AES-GCM, as remediate does. Prints
the median wall time with its range, CPU (user+sys of the tool and its children), the rest of the machine's CPU meanwhile (the
hosts' side: sshd, shells, commands), peak memory, and remediate's (human output) wall and CPU time over each peer's,
paired round by round: the median of the rounds' ratios and their range; and the machine's 1-minute load meanwhile. A
run that leaves a host wrong counts as a failure, however fast. Nothing here is a test; it prints figures.
`--remediate-before DIR` adds a second remediate (`remediate-before`, human output, from DIR): remediate over it, paired
round by round, is what a change did, measured beside the other tools in the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
VENVS = Path("/var/cache/remediate-bench/venvs")
ROOT = Path("/var/tmp/remediate-bench")
PORT = 2022
PER_SSHD = 16  # OpenSSH's limit of ListenAddress lines
#: Every tool logs in as this user (shell /bin/sh, owner of the hosts' files): root's shell on a workstation may
#: run a heavy .bashrc on every command, which would measure that rather than the tools.
USER = "rmt-bench"
TOOLS = ("remediate", "remediate-json", "pyinfra", "ansible", "paramiko")
COMPOSE = ("services:\n  postfix:\n    image: boky/postfix\n    environment:\n"
           "      - ALLOWED_SENDER_DOMAINS=kuma8088.com\n"
           "      - RELAYHOST=[127.0.0.11]:2525\n"
           "      - POSTFIX_relay_domains=kuma8088.com, m8088.com\n")
FIXED = COMPOSE.replace("RELAYHOST=[127.0.0.11]:2525", "POSTFIX_relay_transport=lmtp:[127.0.0.11]:2525") \
    .replace("kuma8088.com, m8088.com", "kuma8088.com")
LOG = "Nov 28 12:05:00 mx postfix/lmtp[1]: E6: to=<t@kuma8088.com>, relay=x, status=sent (250 2.0.0 <t> Saved)\n"


def address(n: int) -> str:
    return f"127.0.1.{n}"


def venvs(source: Path = REPO, before: Path | None = None) -> None:
    """Each tool in its own venv, from PyPI (remediate from this checkout, or the source given; before: a second
    remediate, `remediate-before`, to pair a change with what it changed in one run)."""
    wanted = {"remediate": [str(source)], "pyinfra": ["pyinfra"], "ansible": ["ansible-core"], "paramiko": ["paramiko"]}
    if before is not None:
        wanted["remediate-before"] = [str(before)]
    for tool, packages in wanted.items():
        venv = VENVS / tool
        if not (venv / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        marker = venv / ".installed"
        if not marker.exists() or tool.startswith("remediate"):
            subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--upgrade", *packages], check=True,
                           capture_output=True)
            marker.touch()


@dataclass
class Lab:
    """N hosts: private sshds, a key, known_hosts, and an inventory per tool."""

    n: int
    work: Path
    #: Bumped each round: ansible's ControlPersist sockets go to a new folder (cp-ROUND).
    round_: int = 0
    sshds: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def key(self) -> Path:
        return self.work / "id_ed25519"

    def start(self) -> None:
        host_key = self.work / "host_ed25519"
        for key in (host_key, self.key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        (self.work / "authorized_keys").write_text(self.key.with_suffix(".pub").read_text())
        if subprocess.run(["id", USER], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", USER], check=True)
        subprocess.run(["usermod", "-p", "*", USER], check=True)  # no password, not locked
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        public = " ".join(host_key.with_suffix(".pub").read_text().split()[:2])
        (self.work / "known_hosts").write_text("".join(f"[{address(i)}]:{PORT} {public}\n" for i in range(1, self.n + 1)))
        for first in range(1, self.n + 1, PER_SSHD):
            config = self.work / f"sshd_{first}"
            listen = "".join(f"ListenAddress {address(i)}:{PORT}\n" for i in range(first, min(first + PER_SSHD, self.n + 1)))
            config.write_text(listen + f"HostKey {host_key}\nPidFile {self.work}/sshd_{first}.pid\n"
                              f"AuthorizedKeysFile {self.work}/authorized_keys\nStrictModes no\nUsePAM no\n"
                              "PasswordAuthentication no\nPermitRootLogin no\nMaxStartups 500\n"
                              "MaxSessions 100\nLogLevel ERROR\n")
            self.sshds.append(subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
                                               stderr=open(self.work / f"sshd_{first}.log", "ab")))
        time.sleep(0.5)
        self.inventories()

    def stop(self) -> None:
        for sshd in self.sshds:
            sshd.terminate()
        for sshd in self.sshds:
            sshd.wait(5)

    def dir(self, i: int) -> Path:
        return ROOT / f"h{i}"

    def reset(self) -> None:
        shutil.rmtree(ROOT, ignore_errors=True)
        for i in range(1, self.n + 1):
            self.dir(i).mkdir(parents=True)
            (self.dir(i) / "docker-compose.yml").write_text(COMPOSE)
            (self.dir(i) / "mail.log").write_text(LOG)
        subprocess.run(["chown", "-R", f"{USER}:{USER}", str(ROOT)], check=True)

    def check(self, first: bool) -> str | None:
        """What is wrong on any host, or None."""
        for i in range(1, self.n + 1):
            text = (self.dir(i) / "docker-compose.yml").read_text()
            if text != FIXED:
                return f"h{i}: compose file is {text!r}"
            backups = [p for p in self.dir(i).iterdir() if p.name.startswith("docker-compose.yml.")]
            if not backups:
                return f"h{i}: no backup of the compose file"
        return None

    def inventories(self) -> None:
        hosts = range(1, self.n + 1)
        (self.work / "remediate.yml").write_text(
            "all:\n  vars:\n"
            f"    ansible_port: {PORT}\n    ansible_user: {USER}\n    ansible_ssh_private_key_file: {self.key}\n"
            f"    ssh_known_hosts_file: {self.work}/known_hosts\n  hosts:\n"
            + "".join(f"    h{i}:\n      ansible_host: {address(i)}\n      dir: {self.dir(i)}\n"
                      f"      remediate_state_dir: {self.dir(i)}/.state\n" for i in hosts))
        (self.work / "pyinfra_inventory.py").write_text(
            "hosts = [\n" + "".join(
                f"    ({address(i)!r}, {{'ssh_port': {PORT}, 'ssh_user': {USER!r}, 'ssh_key': {str(self.key)!r}, "
                f"'ssh_known_hosts_file': {str(self.work / 'known_hosts')!r}, 'ssh_strict_host_key_checking': 'yes', "
                f"'dir': {str(self.dir(i))!r}}}),\n" for i in hosts) + "]\n")
        (self.work / "ansible_hosts").write_text("[all]\n" + "".join(
            f"{address(i)} ansible_port={PORT} dir={self.dir(i)}\n" for i in hosts))
        (self.work / "ansible.cfg").write_text(
            "[defaults]\nforks = 20\nhost_key_checking = True\ninterpreter_python = /usr/bin/python3\n"
            f"private_key_file = {self.key}\nremote_user = {USER}\nstdout_callback = default\n"
            "[ssh_connection]\npipelining = True\n"
            f"ssh_args = -o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile={self.work}/known_hosts\n")

    def command(self, tool: str) -> tuple[list[str], dict[str, str]]:
        # Every tool runs as from a user's shell. A PYTHONDONTWRITEBYTECODE=1 inherited from where the benchmark is
        # started (this project's VM sets it) is not passed on: it would keep remediate from keeping its compiled
        # agent (agent._compiled), so every run would compile it again, which no user's second run does. The venvs'
        # own modules were compiled by pip at install, for every tool alike.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        if tool.startswith("remediate"):
            env["XDG_STATE_HOME"] = str(self.work / "state")
            json = ["--json"] if tool == "remediate-json" else []
            venv = VENVS / ("remediate-before" if tool == "remediate-before" else "remediate")
            return [str(venv / "bin" / "remediate"), "apply", "--yes", *json, "-i",
                    str(self.work / "remediate.yml"), "-p", str(HERE / "remediate.yml"), "--host", "all"], env
        if tool == "pyinfra":
            return [str(VENVS / tool / "bin" / "pyinfra"), "-y", "--parallel", "20", str(self.work / "pyinfra_inventory.py"),
                    str(HERE / "pyinfra_deploy.py")], env
        if tool == "ansible":
            env["ANSIBLE_CONFIG"] = str(self.work / "ansible.cfg")
            env["ANSIBLE_CONTROL_PATH_DIR"] = str(self.work / f"cp-{self.round_}")
            return [str(VENVS / tool / "bin" / "ansible-playbook"), "-i", str(self.work / "ansible_hosts"),
                    str(HERE / "ansible.yml")], env
        return [str(VENVS / tool / "bin" / "python"), str(HERE / "paramiko_script.py"), str(self.key),
                str(self.work / "known_hosts"), str(PORT), USER, str(ROOT / "h{n}"),
                *(address(i) for i in range(1, self.n + 1))], env


@dataclass
class Sample:
    wall: float
    cpu: float
    rss_mb: float
    ok: bool
    why: str = ""
    #: The rest of the machine's CPU during the run: the hosts' side (sshd, shells, the commands), which shares this
    #: machine's cores here and would be spread over the hosts on a real fleet.
    hosts_cpu: float = 0.0
    #: The machine's 1-minute load average as the run began: the machine is shared, and the figures say how busy.
    load: float = 0.0


def measure(lab: Lab, tool: str, first: bool) -> Sample:
    argv, env = lab.command(tool)
    report = lab.work / "time.txt"
    load = os.getloadavg()[0]
    busy = busy_seconds()
    started = time.monotonic()
    done = subprocess.run(["/usr/bin/time", "-o", str(report), "-f", "%U %S %M", *argv], env=env, cwd=lab.work,
                          capture_output=True, text=True)
    wall = time.monotonic() - started
    machine = busy_seconds() - busy
    user, system, rss = report.read_text().split()[-3:]
    wrong = lab.check(first) if done.returncode == 0 else f"exit {done.returncode}: {(done.stdout + done.stderr)[-400:]}"
    cpu = float(user) + float(system)
    return Sample(wall, cpu, int(rss) / 1024, wrong is None, wrong or "", max(0.0, machine - cpu), load)


def busy_seconds() -> float:
    """CPU time the whole machine has spent busy (every core, every process), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1,20,100")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--remediate-from", type=Path, default=REPO,
                        help="the source remediate is installed from (a `git archive` of a commit: not a working "
                             "tree others are editing)")
    parser.add_argument("--remediate-before", type=Path, default=None,
                        help="a second source (the commit before a change), run as the tool remediate-before with "
                             "the human output: remediate over it, paired round by round, is the change's effect")
    args = parser.parse_args()
    tools = args.tools.split(",")
    if args.remediate_before is not None and "remediate-before" not in tools:
        tools.insert(1, "remediate-before")
    venvs(args.remediate_from, args.remediate_before)
    results: dict[tuple[int, str, str], list[Sample]] = {}
    for n in (int(x) for x in args.sizes.split(",")):
        work = Path(tempfile.mkdtemp(prefix="remediate-bench-"))
        work.chmod(0o755)
        lab = Lab(n, work)
        lab.start()
        try:
            for round_ in range(args.rounds):
                lab.round_ = round_
                order = tools[round_ % len(tools):] + tools[:round_ % len(tools)]
                for tool in order:
                    lab.reset()
                    for phase in ("first", "no-op"):
                        sample = measure(lab, tool, phase == "first")
                        results.setdefault((n, tool, phase), []).append(sample)
                        if not sample.ok:
                            print(f"  ! {tool} {phase} on {n} host(s) failed: {sample.why}", flush=True)
        finally:
            lab.stop()
            shutil.rmtree(work, ignore_errors=True)
    report(results, tools)


def paired(mine: list[Sample], theirs: list[Sample], of: str) -> str:
    """remediate's figure (wall or cpu) over the tool's, round by round: the median ratio [min-max]."""
    ratios = [getattr(a, of) / getattr(b, of) for a, b in zip(mine, theirs) if a.ok and b.ok and getattr(b, of) > 0]
    return f"{statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]" if ratios else "n/a"


def report(results: dict[tuple[int, str, str], list[Sample]], tools: list[str]) -> None:
    """Per size, run and tool: the median wall time [min-max], and remediate's (human output) over the tool's, paired
    round by round (each round's runs were back to back): the median ratio [min-max] of the walls, then of the CPU
    times (user+sys: on a shared machine, the steadier figure). Then the 1-minute load the runs began at."""
    print(f"{'hosts':>5} {'run':6} {'tool':16} {'wall s':>7} {'[min-max]':>13} {'cpu s':>6} {'hosts s':>7} {'peak MB':>7} "
          f"{'ok':>5}  remediate / tool: wall [min-max], cpu [min-max]")
    for n in sorted({k[0] for k in results}):
        for phase in ("first", "no-op"):
            mine = results.get((n, "remediate", phase), [])
            for tool in tools:
                samples = results.get((n, tool, phase))
                if not samples:
                    continue
                good = [s for s in samples if s.ok]
                nan = float("nan")
                walls = [s.wall for s in good]
                wall = statistics.median(walls) if good else nan
                spread = f"[{min(walls):.2f}-{max(walls):.2f}]" if good else ""
                cpu = statistics.median(s.cpu for s in good) if good else nan
                hosts = statistics.median(s.hosts_cpu for s in good) if good else nan
                rss = max(s.rss_mb for s in samples)
                ratio = "" if tool == "remediate" else f"{paired(mine, samples, 'wall')}, cpu {paired(mine, samples, 'cpu')}"
                print(f"{n:5d} {phase:6} {tool:16} {wall:7.2f} {spread:>13} {cpu:6.2f} {hosts:7.2f} {rss:7.0f} "
                      f"{len(good)}/{len(samples):<3}  {ratio}")
        loads = [s.load for (size, _, _), samples in results.items() if size == n for s in samples]
        print(f"{n:5d} hosts: 1-minute load {min(loads):.1f}-{max(loads):.1f} (median {statistics.median(loads):.1f})")


if __name__ == "__main__":
    main()
