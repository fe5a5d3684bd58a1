"""The code remediate runs on a host, as one text: its own operations (read, write, private_folder, take_lock,
backups, ...) and the loop that serves them, the only implementation of each.

The files named in PARTS are joined, in that order, into SOURCE, run as `python3 -I -S -c SOURCE OPERATION ARGS...`
(one operation, in a session of its own, when there is no agent) or by the persistent agent (transport/agent.py):
`python3 -I -S -c BOOT` (boot.py), which reads SOURCE from its stdin, as the controller compiled it when the host's
python3 runs the same bytecode, else as text. On the host they share one namespace, so their `from remediate...`
lines (there for linting and for tests, which import them here) are left out. They need Python 3.6 or later and only
its built-in modules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

#: The files of the host side, in the order they are joined (each uses only those before it).
PARTS: Final = ("common", "files", "folders", "backups", "loop")
#: What the host says when its python3 is too old to run SOURCE (checked before anything else runs).
TOO_OLD: Final = "remediate: this python is older than 3.6"
#: Before the parts: a python3 too old to run them says so and does nothing.
PREAMBLE: Final = f"""import sys
if sys.version_info < (3, 6):
    sys.stderr.write("{TOO_OLD} (" + sys.version.split()[0] + ")\\n")
    sys.exit(1)
"""


def join() -> str:
    """The host side's text: PREAMBLE, then each part without its imports from remediate."""
    here = Path(__file__).parent
    texts = [PREAMBLE]
    for part in PARTS:
        kept, inside = [], False
        for line in (here / f"{part}.py").read_text().splitlines(keepends=True):
            if line.startswith("from remediate."):  # with its continuation lines, when parenthesised
                inside = line.rstrip().endswith("(")
            elif inside:
                inside = not line.rstrip().endswith(")")
            else:
                kept.append(line)
        texts.append("".join(kept))
    return "\n".join(texts)


#: The text run on hosts (see the module's docstring).
SOURCE: Final = join()
#: The agent's own command-line text (onhost/boot.py): it runs SOURCE as it arrives on stdin (agent.boot_frame).
BOOT: Final = PREAMBLE + (Path(__file__).parent / "boot.py").read_text()
