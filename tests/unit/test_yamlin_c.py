"""YAML read by libyaml's parser and composer under the round-trip constructor (yamlin._fast): every document it reads
gives exactly what the pure loader gives (values, types, tags, lines, columns), anything else goes to the pure loader
(which words every error as before), and no document, however deep, reaches libyaml's recursive composer."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from remediate import yamlin
from remediate.errors import InputError

from .test_yamlin_scanner import TEXTS, corpus, full, read, shape


def fast(text: str) -> Any:
    done, doc = yamlin._fast(text)
    assert done, text[:200]
    return doc


def test_libyaml_is_there_and_reads_every_shipped_playbook_and_the_labs_inventory() -> None:
    assert yamlin._CParser is not None  # ruamel.yaml.clib is a dependency: CI must exercise this path
    read_fast = [text for text in corpus() if yamlin._fast(text)[0]]
    assert len(read_fast) >= 20, len(read_fast)  # the repository's YAML: playbooks, lab, bench, tests
    for text in read_fast:
        assert read(text, fast) == read(text, full), text[:200]


def test_what_libyaml_is_not_given_or_refuses_goes_to_the_pure_loader() -> None:
    for text in ("a:\tb\n", "%YAML 1.1\n---\nx: yes\n", "a: b\n  c: d\n", "k: 'unclosed\n", "- a\n---\n- b\n",
                 "a: \u2028b\n", "x: *nowhere\n"):
        assert yamlin._fast(text) == (False, None), text
    assert yamlin._fast("") == (True, None) and yamlin._fast("# only a comment\n") == (True, None)
    for text in TEXTS:  # errors are the pure loader's, word for word
        assert read(text, yamlin._load) == read(text, full)


@pytest.mark.parametrize("text", [
    "[" * 50_000 + "]" * 50_000,
    "- " * 50_000 + "x\n",
    "".join(" " * i + f"k{i}:\n" for i in range(400)) + " " * 400 + "v\n",
    "a: " + "{b: " * 70 + "c" + "}" * 70 + "\n",
])
def test_a_deep_document_never_reaches_libyaml_and_is_refused_as_before(text: str) -> None:
    """libyaml's composer recurses in C: 50,000 levels would end the process (a segfault), not raise."""
    done = subprocess.run([sys.executable, "-c", "import sys; from remediate import yamlin\n"
                           "try:\n yamlin.parse(sys.stdin.buffer.read(), 'deep.yml', what='inventory')\n"
                           "except Exception as e:\n print(type(e).__name__, e)"],
                          input=text.encode(), capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr[-500:]
    assert b"InputError deep.yml" in done.stdout and b"levels deep" in done.stdout, done.stdout[-300:]
    assert yamlin._fast(text) == (False, None)


#: What the review found libyaml given and reading otherwise: a CR alone ends a line (a deep document past the
#: nesting bound, a directive past the directive test), `?` in a flow collection, JSON-like keys in a flow sequence,
#: a tag after a JSON-like key, a block scalar first on its line.
REVIEWED = ["# inventory\r%YAML 1.1\r---\rall:\r  vars:\r    become: yes\r    mode: 0777\r    t: 1:20\r",
            '["":]\n', '[[]:]\n', "k: ['':, b]\n", "['':a]\n", "['' :]\n", "[[]:-]\n", "[[]:, []]\n", "k: [?,, b]\n",
            "[?]]\n", "hosts: [a, ?]]\n", "[?:]\n", "[?::]\n", '{"a":!!str 1}\n', 'all:\n  vars: {"port":!!str 22}\n',
            " |\n#\n", "  >\n#x\n"]


@pytest.mark.parametrize("text", REVIEWED)
def test_what_libyaml_reads_otherwise_is_read_by_the_pure_loader(text: str) -> None:
    assert yamlin._fast(text) == (False, None)
    assert read(text, yamlin._load) == read(text, full)
    assert read('k: {"a":b}\n', fast) == read('k: {"a":b}\n', full)  # a flow mapping's JSON-like key: the same


def test_a_deep_document_with_lone_carriage_returns_never_reaches_libyaml() -> None:
    text = "k:\r  " + "- " * 50_000 + "x\r"  # one line to a "\n" split, 50,000 levels to libyaml
    done = subprocess.run([sys.executable, "-c", "import sys; from remediate import yamlin\n"
                           "try:\n yamlin.parse(sys.stdin.buffer.read(), 'cr.yml', what='compose file')\n"
                           "except Exception as e:\n print(type(e).__name__, e)"],
                          input=text.encode(), capture_output=True, timeout=120)
    assert done.returncode == 0 and b"InputError cr.yml" in done.stdout, (done.returncode, done.stdout[-300:])


def test_a_thread_with_a_small_stack_reads_as_deep_a_document_as_libyaml_is_given() -> None:
    """libyaml is handed at most C_NESTING levels: 64 KiB of stack holds them (200 levels overflowed it)."""
    script = ("import sys, threading; from remediate import yamlin\n"
              "out = []\n"
              "def work():\n"
              "    for depth in (yamlin.C_NESTING // 2, 200):\n"
              "        text = 'a: ' + '[' * depth + ']' * depth + '\\n'\n"
              "        try:\n            yamlin.parse(text.encode(), 'f.yml', what='inventory'); out.append('read')\n"
              "        except Exception as e:\n            out.append(type(e).__name__)\n"
              "threading.stack_size(64 * 1024)\n"
              "t = threading.Thread(target=work); t.start(); t.join(); print(out)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "['InputError', 'InputError']", (done.returncode,
                                                                                            done.stdout, done.stderr[-300:])


def test_an_alias_that_holds_itself_is_measured_without_end() -> None:
    text = "a: &x\n  b: *x\n"
    try:
        expected = read(text, full)
    except RecursionError:
        expected = None
    done, _ = yamlin._fast(text)
    if done:
        assert read(text, fast) == expected


def test_without_libyaml_everything_reads_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = corpus()
    with_c = [read(text, yamlin._load) for text in texts]
    monkeypatch.setattr(yamlin, "_CParser", None)
    assert [read(text, yamlin._load) for text in texts] == with_c


#: YAML's own characters, and text around them, to make documents both loaders may read otherwise.
SYNTAX = st.text(st.sampled_from(list(" \n-?:,[]{}#&*!|>'\"%@`\\.0123456789abcxyzKEY~+=é漢\u00a0\x7f\ufeff")),
                 max_size=60)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=12),
                    st.sampled_from(["yes", "no", "on", "0o17", "0x1F", "1_000", "2001-12-14", ".inf", "~", "null",
                                     "- x", "a: b", "#c", "[1]", "'q'", "1e3", "+1", "-.5", "=", "<<"]))
data = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                    max_leaves=20)


def dumped(value: Any, flow: bool | None, width: int) -> str:
    import io
    out = io.StringIO()
    yaml = YAML(typ="rt")
    yaml.default_flow_style = flow
    yaml.width = width
    yaml.dump(value, out)
    return out.getvalue()


def same_when_read_fast(text: str) -> None:
    done, doc = yamlin._fast(text)
    if not done:
        return
    try:
        expected = shape(full(text))
    except Exception as refused:  # noqa: BLE001
        pytest.fail(f"libyaml read what the pure loader refuses ({type(refused).__name__}: {refused}): {text!r}")
    assert shape(doc) == expected, text


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=data, flow=st.sampled_from([None, True, False]), width=st.sampled_from([20, 80, 4096]),
       at=st.integers(min_value=0, max_value=10_000), inserted=SYNTAX)
def test_a_document_libyaml_reads_is_what_the_pure_loader_reads(value: Any, flow: bool | None, width: int, at: int,
                                                                inserted: str) -> None:
    text = dumped(value, flow, width)
    same_when_read_fast(text)
    at %= len(text) + 1
    same_when_read_fast(text[:at] + inserted + text[at:])  # and with YAML's own characters put in anywhere


@settings(max_examples=1500, deadline=None)
@given(text=SYNTAX)
def test_any_text_libyaml_reads_is_what_the_pure_loader_reads(text: str) -> None:
    same_when_read_fast(text)


def test_an_inventory_error_still_names_its_line() -> None:
    with pytest.raises(InputError, match=r"^inventory.yml:3: "):
        yamlin.parse(b"all:\n  hosts:\n    h1: {a: 1, a: 2}\n", "inventory.yml", what="inventory")


def test_a_yaml_1_1_directive_holds_for_its_own_document_only() -> None:
    """ruamel's loader keeps a %YAML directive's version: reused on the thread, it read every later document as YAML
    1.1 (`yes` true, `y` a key True), on the pure path and, before it, everywhere."""
    assert yamlin.parse(b"%YAML 1.1\n---\nbecome: yes\n", "a.yml", what="inventory") == {"become": True}
    for text in (b"become: yes\n", b"become: &x yes\nagain: *x\n"):  # the fast path, then the pure one (an anchor)
        assert yamlin.parse(text, "b.yml", what="inventory")["become"] == "yes", text
