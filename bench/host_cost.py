"""What each of remediate's remote commands costs on the host's side: CPU (user+sys of the shell and every process it
starts) per run of each script, run here by /bin/sh on a scratch folder, as sshd would run it; then the same
commands answered by the remote agent (one python3 for them all), and the agent's start. Prints figures.

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

from remediate.engine.lock import TAKE_SCRIPT
from remediate.kinds.backup import BACKUP_SCRIPT, LIST_SCRIPT
from remediate.transport import JOURNAL_THEN, READ_SCRIPT, WRITE_SCRIPT
from remediate.transport.agent import Agent, PipeChannel, agent_command

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

    def no_lock(i: int) -> None:
        (folder / "lock").unlink(missing_ok=True)

    print(f"host-side CPU per command ({RUNS} runs each; /bin/sh is {os.path.realpath('/bin/sh')}):")
    cost("sh -c true (a command's floor)", lambda i: sh("true"))
    cost("read a file (plan)", lambda i: sh(READ_SCRIPT, str(compose), "8388608"))
    cost("read a missing file (.env)", lambda i: sh(READ_SCRIPT, str(folder / ".env"), "8388608"))
    cost("list backups (plan)", lambda i: sh(LIST_SCRIPT, str(compose)))
    cost("take the lock and make the run folder", lambda i: sh(TAKE_SCRIPT, str(folder / "lock"), str(run / str(i))),
         stdin=b"{}", prep=no_lock)
    cost("journal copy + back up", lambda i: sh(JOURNAL_THEN, str(run / "journal.json"), str(len(journal)),
                                                "sh", "-c", BACKUP_SCRIPT, "sh", str(compose), digest,
                                                f"{compose}.backup-{i}"), stdin=journal)
    cost("journal copy + write a file", lambda i: sh(JOURNAL_THEN, str(run / "journal.json"), str(len(journal)),
                                                     "sh", "-c", WRITE_SCRIPT, "sh", str(compose), "", "", expect, "",
                                                     digest), stdin=journal + content)
    cost("journal copy + `true` (the restart stand-in)", lambda i: sh(JOURNAL_THEN, str(run / "journal.json"),
                                                                       str(len(journal)), "true"), stdin=journal)
    cost("write a file alone", lambda i: sh(WRITE_SCRIPT, str(compose), "", "", expect, "", digest), stdin=content)
    cost("the agent's start (python3 -I -S)", lambda i: agent_command(("/usr/bin/python3",)))
    print("the same commands in the agent:")
    agent_cost("sh -c true", lambda i: sh("true"))
    agent_cost("read a file (plan)", lambda i: sh(READ_SCRIPT, str(compose), "8388608"))
    agent_cost("list backups (plan)", lambda i: sh(LIST_SCRIPT, str(compose)))
    agent_cost("take the lock and make the run folder", lambda i: sh(TAKE_SCRIPT, str(folder / "lock"),
                                                                      str(run / f"a{i}")), stdin=b"{}", prep=no_lock)
    agent_cost("journal copy + back up", lambda i: sh(JOURNAL_THEN, str(run / "journal.json"), str(len(journal)),
                                                      "sh", "-c", BACKUP_SCRIPT, "sh", str(compose), digest,
                                                      f"{compose}.backup-a{i}"), stdin=journal)
    agent_cost("journal copy + write a file", lambda i: sh(JOURNAL_THEN, str(run / "journal.json"), str(len(journal)),
                                                           "sh", "-c", WRITE_SCRIPT, "sh", str(compose), "", "", expect,
                                                           "", digest), stdin=journal + content)
    agent_cost("journal copy + `true` (a spawned command)", lambda i: sh(JOURNAL_THEN, str(run / "journal.json"),
                                                                          str(len(journal)), "true"), stdin=journal)
    subprocess.run(["rm", "-rf", str(folder)], check=False)


if __name__ == "__main__":
    main()
