"""How many SSH round trips and how much time plan and apply take against the lab.

Run with the lab up (bash lab/up) and the lab in its broken state (bash lab/reset):
    python bench/round_trips.py
It prints figures; nothing here asserts on time.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path

from remediate import api as session
from remediate.engine import journal
from remediate.inputs import inventory
from remediate.inputs.inventory import Host
from remediate.transport import Transport
from remediate.transport.ssh import connect

LAB = Path(__file__).resolve().parents[1] / "lab"


def main() -> None:
    inv = inventory.load(LAB / "inventory.yml")
    host = inv.hosts["ec2-mx"]
    connects, firsts = [], []
    for _ in range(10):  # the first command on a new connection used to stall ~45 ms (see transport/ssh.py _PromptAck)
        t0 = time.monotonic()
        fresh = connect(host)
        t1 = time.monotonic()
        fresh.run(["true"], sudo=False)
        connects.append(t1 - t0)
        firsts.append(time.monotonic() - t1)
        fresh.close()
    print(f"connect (TCP, SSH handshake, key auth), median of 10:  {1000 * statistics.median(connects):7.1f} ms")
    print(f"first command on a new connection, median of 10:     {1000 * statistics.median(firsts):7.1f} ms")
    transport = connect(host)
    samples = []
    for _ in range(50):
        t0 = time.monotonic()
        transport.run(["true"])
        samples.append(time.monotonic() - t0)
    print(f"one command round trip (sudo true), median of 50:  {1000 * statistics.median(samples):7.1f} ms")
    transport.close()

    subprocess.run(["bash", str(LAB / "reset")], check=True, capture_output=True)
    opened: list[Transport] = []

    def factory(h: Host) -> Transport:
        opened.append(connect(h))
        return opened[-1]

    opts = session.Options(inventory=LAB / "inventory.yml", hosts=("ec2-mx",))
    for name, call in (("plan", lambda: session.plan(opts, lambda e: None, factory).outcomes),
                       ("apply", lambda: session.apply(opts, lambda e: None, factory, lambda pending: True)),
                       ("apply again (no-op)", lambda: session.apply(opts, lambda e: None, factory, lambda p: True))):
        opened.clear()
        t0 = time.monotonic()
        outcomes = call()
        elapsed = time.monotonic() - t0
        commands = sum(len(t.history) for t in opened)
        hosts = ", ".join(t.name for t in opened)
        print(f"{name:20s} {elapsed:6.2f} s  {commands:3d} remote commands  connections: {len(opened)} ({hosts})"
              f"  exit {session.exit_code(outcomes)}")
        run = next((r for r in journal.history("ec2-mx") if r["run_id"] == outcomes[0].run_id), None)
        if name.startswith("apply") and run is not None:
            per_step = ", ".join(f"{s['id']} {len(s.get('commands') or [])}" for s in run["steps"] if s.get("commands"))
            print(f"{'':20s} of which applying and verifying, per step: {per_step or 'none'}")
    subprocess.run(["bash", str(LAB / "reset")], check=True, capture_output=True)


if __name__ == "__main__":
    main()
