"""apply on the hardened lab host against apply on ec2-mx: wall time of the whole command, alternating.

ec2-mx: sshd allows port forwarding, sudo is NOPASSWD. ec2-mx-hardened: AllowTcpForwarding no, sudo asks for a
password for sh (NOPASSWD for docker only), Postfix on 127.0.0.12 only. Both apply smtp-to-lmtp from the broken
state. Run with the lab up, as root:
    python bench/hardened.py [rounds]
It prints figures; nothing here asserts on time. The goal is hardened <= 1.2x ec2-mx.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

LAB = Path(__file__).resolve().parents[1] / "lab"
PASSWORD = Path("/var/lib/remediate-lab/ops-hard.password")


def apply(host: str) -> float:
    env = {**os.environ, "REMEDIATE_BECOME_PASSWORD": PASSWORD.read_text().strip()}
    started = time.monotonic()
    done = subprocess.run(["remediate", "apply", "--yes", "--host", host, "-i", str(LAB / "inventory.yml")],
                          capture_output=True, text=True, env=env)
    took = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"apply on {host} failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
    return took


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    times: dict[str, list[float]] = {"ec2-mx": [], "ec2-mx-hardened": []}
    for index in range(rounds):
        order = list(times) if index % 2 == 0 else list(reversed(times))
        subprocess.run(["bash", str(LAB / "reset")], check=True, capture_output=True)
        for host in order:
            times[host].append(apply(host))
    for host, samples in times.items():
        print(f"{host:16} apply  median {statistics.median(samples):6.2f} s  "
              f"(min {min(samples):.2f}, max {max(samples):.2f}, {rounds} runs)")
    ratio = statistics.median(times["ec2-mx-hardened"]) / statistics.median(times["ec2-mx"])
    print(f"hardened / ec2-mx: {ratio:.2f}x (goal: at most 1.20x)")


if __name__ == "__main__":
    main()
