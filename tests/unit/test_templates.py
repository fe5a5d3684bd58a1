"""A variable never becomes code, however the shell or the interpreter is written (templates.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from remediate.errors import InputError
from remediate.inputs.templates import render_command

EVIL = "x'\"; touch {pwned}; echo $(touch {pwned}) `touch {pwned}`"

POSITIONAL = [
    "sh -c 'echo {{ v }}'",
    "sh -e -c 'echo {{ v }}'",
    "sh -ec 'echo \"{{ v }}\"'",
    "bash -o pipefail -c 'echo {{ v }} | cat'",
    "bash -euo pipefail -c 'echo {{ v }}'",
    "bash --norc -c 'echo {{ v }}'",
    "env sh -c 'echo {{ v }}'",
    "env LC_ALL=C /bin/sh -c 'echo {{ v }}'",
    "/usr/bin/env bash -c 'echo {{ v }}' name",
    "timeout 5 dash -c 'echo {{ v }}'",
    "nice -n 5 sh -c 'echo {{ v }}'",
    "sh -c -e 'echo {{ v }}'",
]

REFUSED = [
    "python3 -c 'print({{ v }})'",
    "python3 -X utf8 -c 'print(\"{{ v }}\")'",
    "/usr/bin/python3.11 -Ic 'print({{ v }})'",
    "perl -ne 'print {{ v }}'",
    "ruby -e 'puts {{ v }}'",
    "node --eval 'console.log({{ v }})'",
    "awk '{ print {{ v }} }'",
    "sed -e 's/a/{{ v }}/e' /dev/null",
    "ssh otherhost echo {{ v }}",
    "su root -c 'echo {{ v }}'",
    "watch -n1 echo {{ v }}",
    "sh -c 'python3 -c \"print({{ v }})\"'",
    "sh -c 'bash -c \"echo {{ v }}\"'",
    "sh -c 'eval {{ v }}'",
    "sh -c 'exec \"$@\"' sh python3 -c {{ v }}",
    # found by the adversarial review of #22: each ran as root during plan (unless:)
    "env -S {{ v }}",
    "env --split-string={{ v }}",
    "/usr/bin/env -S 'sh -c' 'echo {{ v }}'",
    "sh -c 'env -S {{ v }}'",
    "flock /tmp/f -c {{ v }}",
    "flock /tmp/f --command={{ v }}",
    "script --command={{ v }}",
    "tar --checkpoint-action=exec={{ v }} -cf /dev/null /dev/null",
    "sh -c 'trap {{ v }} EXIT'",
    "sh -c 'echo {{ v }} | sh'",
    "sh -c \"$(echo {{ v }})\"",
    "sh -c 'x={{ v }}; eval \"$x\"'",
]


@pytest.mark.parametrize("command", POSITIONAL)
def test_a_variable_in_any_shell_script_is_one_positional_argument(command: str, tmp_path: Path) -> None:
    pwned = tmp_path / "PWNED"
    value = EVIL.format(pwned=pwned)
    argv = render_command(command, {"v": value}.__getitem__, "book.yml:3")
    assert value in argv and not any(value in word and word != value for word in argv)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout.strip() == value, done.stderr
    assert not pwned.exists()


@pytest.mark.parametrize("command", REFUSED)
def test_a_variable_where_it_would_be_code_is_refused_with_the_place(command: str) -> None:
    with pytest.raises(InputError, match=r"book.yml:3: .*(stands in .*would become code|its value could become code)") as refused:
        render_command(command, {"v": "harmless"}.__getitem__, "book.yml:3")
    assert "argument of its own" in (refused.value.hint or "")


def test_validate_names_the_line_without_an_inventory(tmp_path: Path) -> None:
    book = tmp_path / "book.yml"
    book.write_text("name: inj\nvars: {x: hi}\nsteps:\n  - id: ok\n    kind: command\n    params:\n"
                    "      command: \"true\"\n      unless: \"bash -o pipefail -c 'test -e /tmp/{{ x }}'\"\n"
                    "  - id: bad\n    kind: command\n    params:\n      command: \"python3 -c 'print({{ x }})'\"\n")
    remediate = str(Path(sys.executable).parent / "remediate")  # the venv's console script, whatever PATH says
    done = subprocess.run([remediate, "validate", "-p", str(book)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and f"{book}:11: step 'bad'" in done.stderr and "python" in done.stderr, done.stderr
