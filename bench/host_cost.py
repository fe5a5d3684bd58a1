"""What each of remediate's own operations costs on the host's side: CPU (user+sys of the process and every process it
starts) per run, as the one-shot a host without an agent runs (`python3 -I -S -c SOURCE OPERATION ARGS...`) on a
scratch folder; then the same operations answered by the remote agent (one python3 for them all), and the agent's
start. Prints figures.

    python bench/host_cost.py [runs]

On the fleet benchmark's 2-core machine the 20 "hosts" share the controller's cores, so this work adds up in the
wall time there; on a real fleet each host pays its own share, in parallel."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from remediate.transport import OPERATION
from remediate.transport.agent import Agent, PipeChannel, agent_command
from remediate.transport.onhost import SOURCE

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 100


def cost(name: str, argv: Callable[[int], list[str]], stdin: bytes = b"", prep: Callable[[int], None] | None = None) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for i in range(RUNS):
        if prep:
            prep(i)
        subprocess.run(argv(i), input=stdin, capture_output=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    per = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) / RUNS * 1000
    print(f"  {name:44s} {per:6.2f} ms")
    return per


def process_cpu(pid: int) -> float:
    """CPU seconds of a process and of its children it has waited for (utime, stime, cutime, cstime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def agent_cost(name: str, argv: Callable[[int], list[str]], stdin: bytes = b"",
               prep: Callable[[int], None] | None = None) -> None:
    """The agent's CPU for the same command (it and the processes it starts, if any)."""
    agent = Agent(PipeChannel(), "local", shlex.join(agent_command(("/usr/bin/python3",))))
    assert agent.run(["true"], None, 10) is not None  # started
    process = agent.channel.process
    before = process_cpu(process.pid)
    for i in range(RUNS):
        if prep:
            prep(i)
        agent.run(argv(i), stdin, 30)
    per = (process_cpu(process.pid) - before) / RUNS * 1000
    agent.close()
    print(f"  {name:44s} {per:6.2f} ms")


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="remediate-host-cost-"))
    compose = folder / "docker-compose.yml"
    content = (Path(__file__).resolve().parent / "fleet" / "remediate.yml").read_bytes()
    compose.write_bytes(content)
    digest = hashlib.sha256(content).hexdigest()
    st = compose.stat()
    expect = f"{digest} {st.st_mode & 0o7777:o} {st.st_uid} {st.st_gid}"
    journal = json.dumps({"steps": ["x" * 60] * 40}).encode()
    run = folder / "run"
    run.mkdir()
    sh = lambda script, *args: ["sh", "-c", script, "sh", *args]  # noqa: E731
    one = lambda name, *args: ["/usr/bin/python3", "-I", "-S", "-c", SOURCE, name, *args]  # noqa: E731
    own = lambda name, *args: [OPERATION, name, *args]  # noqa: E731

    def no_lock(i: int) -> None:
        (folder / "lock").unlink(missing_ok=True)

    def measure(way: Callable[..., list[str]], report: Callable[..., object], tag: str) -> None:
        report("read a file (plan)", lambda i: way("read", str(compose), "8388608"))
        report("read a missing file (.env)", lambda i: way("read", str(folder / ".env"), "8388608"))
        report("list backups (plan)", lambda i: way("list_backups", str(compose)))
        report("take the lock", lambda i: way("take_lock", str(folder / "lock")), stdin=b"{}", prep=no_lock)
        report("make the run folder", lambda i: way("private_folder", str(run / f"{tag}{i}")))
        report("journal copy + back up", lambda i: way("journal_then", str(run / "journal.json"), str(len(journal)),
                                                       *own("backup", str(compose), digest,
                                                            f"{compose}.backup-{tag}{i}")), stdin=journal)
        report("journal copy + write a file", lambda i: way("journal_then", str(run / "journal.json"),
                                                            str(len(journal)), *own("write", str(compose), "", "",
                                                                                    expect, "", digest)),
               stdin=journal + content)
        report("journal copy + `true` (a spawned command)", lambda i: way("journal_then", str(run / "journal.json"),
                                                                          str(len(journal)), "true"), stdin=journal)
        report("write a file alone", lambda i: way("write", str(compose), "", "", expect, "", digest), stdin=content)

    print(f"host-side CPU per operation without an agent ({RUNS} runs each; python3 -I -S -c, one process each):")
    cost("sh -c true (a session's floor)", lambda i: sh("true"))
    cost("python3 -I -S -c pass (the one-shot's floor)", lambda i: ["/usr/bin/python3", "-I", "-S", "-c", "pass"])
    measure(one, cost, "s")
    cost("the agent's start (python3 -I -S)", lambda i: agent_command(("/usr/bin/python3",)))
    print("the same operations in the agent:")
    agent_cost("sh -c true", lambda i: sh("true"))
    measure(own, agent_cost, "a")
    subprocess.run(["rm", "-rf", str(folder)], check=False)


if __name__ == "__main__":
    main()
