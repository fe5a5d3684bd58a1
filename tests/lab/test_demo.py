"""The README's first quick-start command works: it shows the bounce, the plan, the fix and the saved mail."""

from __future__ import annotations

import subprocess

from . import labctl


def test_demo_script(lab_up: None) -> None:
    done = subprocess.run(["bash", str(labctl.LAB.parent / "scripts" / "demo")], capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    bounce = out.index("status=bounced")
    planned = out.index("exit code: 2")
    applied = out.index("ec2-mx: applied")
    saved = out.index("saved mail to INBOX", applied)  # Dovecot's own log, shown after the fix
    assert bounce < planned < applied < saved, out[-3000:]
    assert "refused to talk to me: 500 5.5.1 Unknown command" in out
    assert done.stdout.rstrip().splitlines()[-1].startswith("Undo:")
    labctl.reset()
