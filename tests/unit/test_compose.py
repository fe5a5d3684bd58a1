"""Compose environment edits on real-world shapes: only the intended entries change, every other byte stays."""

from __future__ import annotations

import pytest

from remediate.errors import InputError
from remediate.mail import compose

FIX = {"set_": {"POSTFIX_relay_transport": "lmtp:[10.0.0.5]:2525"}, "remove": ("RELAYHOST",),
       "rename": ("RELAYHOST", "POSTFIX_relay_transport")}


def fix(text: str, service: str = "postfix") -> str:
    return compose.edit_env(text, service, **FIX)  # type: ignore[arg-type]


CASES = {
    "list, bare, 2 spaces": (
        "services:\n  postfix:\n    environment:\n      - A=1\n      - RELAYHOST=[10.0.0.5]:2525\n      - B=2\n",
        "services:\n  postfix:\n    environment:\n      - A=1\n      - POSTFIX_relay_transport=lmtp:[10.0.0.5]:2525\n      - B=2\n",
    ),
    "list, double quoted, trailing comment": (
        'services:\n  postfix:\n    environment:\n      - "RELAYHOST=[10.0.0.5]:2525"   # SMTP (wrong)\n',
        'services:\n  postfix:\n    environment:\n      - "POSTFIX_relay_transport=lmtp:[10.0.0.5]:2525"   # SMTP (wrong)\n',
    ),
    "list, single quoted": (
        "services:\n  postfix:\n    environment:\n      - 'RELAYHOST=[10.0.0.5]:2525'\n",
        "services:\n  postfix:\n    environment:\n      - 'POSTFIX_relay_transport=lmtp:[10.0.0.5]:2525'\n",
    ),
    "list, 4 spaces, comments and blank lines between entries": (
        "services:\n    postfix:\n        environment:\n            # senders\n            - A=1\n\n"
        "            # relay\n            - RELAYHOST=[10.0.0.5]:2525\n\n            - B=2  # keep\n",
        "services:\n    postfix:\n        environment:\n            # senders\n            - A=1\n\n"
        "            # relay\n            - POSTFIX_relay_transport=lmtp:[10.0.0.5]:2525\n\n            - B=2  # keep\n",
    ),
    "list, dash at the parent's indentation": (
        "services:\n  postfix:\n    environment:\n    - RELAYHOST=[10.0.0.5]:2525\n    - B=2\n",
        "services:\n  postfix:\n    environment:\n    - POSTFIX_relay_transport=lmtp:[10.0.0.5]:2525\n    - B=2\n",
    ),
    "mapping, double quoted value": (
        'services:\n  postfix:\n    environment:\n      A: "1"\n      RELAYHOST: "[10.0.0.5]:2525"  # smtp\n',
        'services:\n  postfix:\n    environment:\n      A: "1"\n      POSTFIX_relay_transport: "lmtp:[10.0.0.5]:2525"  # smtp\n',
    ),
    "mapping, bare value": (
        "services:\n  postfix:\n    environment:\n      RELAYHOST: 10.0.0.5\n      B: x\n",
        "services:\n  postfix:\n    environment:\n      POSTFIX_relay_transport: lmtp:[10.0.0.5]:2525\n      B: x\n",
    ),
    "CRLF line ends": (
        "services:\r\n  postfix:\r\n    environment:\r\n      - RELAYHOST=[10.0.0.5]:2525\r\n      - B=2\r\n",
        "services:\r\n  postfix:\r\n    environment:\r\n      - POSTFIX_relay_transport=lmtp:[10.0.0.5]:2525\r\n      - B=2\r\n",
    ),
    "several services, only postfix touched": (
        "services:\n  web:\n    environment:\n      - RELAYHOST=[10.0.0.5]:2525\n  postfix:\n    environment:\n"
        "      - RELAYHOST=[10.0.0.5]:2525\n",
        "services:\n  web:\n    environment:\n      - RELAYHOST=[10.0.0.5]:2525\n  postfix:\n    environment:\n"
        "      - POSTFIX_relay_transport=lmtp:[10.0.0.5]:2525\n",
    ),
    "extension field and anchors elsewhere": (
        "x-logging: &logging\n  driver: json-file\nservices:\n  postfix:\n    logging: *logging\n    environment:\n"
        "      - RELAYHOST=[10.0.0.5]:2525\n  other:\n    logging: *logging\n",
        "x-logging: &logging\n  driver: json-file\nservices:\n  postfix:\n    logging: *logging\n    environment:\n"
        "      - POSTFIX_relay_transport=lmtp:[10.0.0.5]:2525\n  other:\n    logging: *logging\n",
    ),
    "RELAYHOST absent: appended like its neighbour": (
        "services:\n  postfix:\n    environment:\n      - \"A=1\"   # a\n",
        "services:\n  postfix:\n    environment:\n      - \"A=1\"   # a\n      - \"POSTFIX_relay_transport=lmtp:[10.0.0.5]:2525\"\n",
    ),
    "relay_transport present: RELAYHOST line removed, value updated": (
        "services:\n  postfix:\n    environment:\n      - RELAYHOST=[10.0.0.5]:2525\n"
        "      - POSTFIX_relay_transport=smtp:[10.0.0.9]:25\n",
        "services:\n  postfix:\n    environment:\n      - POSTFIX_relay_transport=lmtp:[10.0.0.5]:2525\n",
    ),
    "already fixed: unchanged": (
        "services:\n  postfix:\n    environment:\n      - POSTFIX_relay_transport=lmtp:[10.0.0.5]:2525\n",
        "services:\n  postfix:\n    environment:\n      - POSTFIX_relay_transport=lmtp:[10.0.0.5]:2525\n",
    ),
    "no newline at end of file": (
        "services:\n  postfix:\n    environment:\n      - RELAYHOST=[10.0.0.5]:2525",
        "services:\n  postfix:\n    environment:\n      - POSTFIX_relay_transport=lmtp:[10.0.0.5]:2525",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_relay_transport_edit(case: str) -> None:
    before, after = CASES[case]
    assert fix(before) == after


def test_pruning_keeps_quotes_and_comment() -> None:
    text = "services:\n  postfix:\n    environment:\n      - 'POSTFIX_relay_domains=a.com, b.com'  # served\n"
    out = compose.edit_env(text, "postfix", set_={"POSTFIX_relay_domains": "a.com"})
    assert out == "services:\n  postfix:\n    environment:\n      - 'POSTFIX_relay_domains=a.com'  # served\n"


def test_environment_shared_through_an_anchor_is_refused() -> None:
    text = ("x-env: &env\n  - RELAYHOST=[10.0.0.5]:2525\nservices:\n  postfix:\n    environment: *env\n"
            "  relay2:\n    environment: *env\n")
    with pytest.raises(InputError, match="refusing the edit: it would change more than the environment"):
        fix(text)


def test_multi_line_value_is_refused_not_mangled() -> None:
    text = 'services:\n  postfix:\n    environment:\n      - "RELAYHOST=[10.0.0.5]:2525\n        continued"\n'
    with pytest.raises(InputError, match="refusing the edit"):
        fix(text)


def test_mapping_environment_with_merge_key_is_refused() -> None:
    text = ("x-env: &env\n  RELAYHOST: '[10.0.0.5]:2525'\nservices:\n  postfix:\n    environment:\n      <<: *env\n"
            "      A: '1'\n")
    with pytest.raises(InputError, match="refusing"):
        fix(text)


@pytest.mark.parametrize(("text", "words"), [
    ("services:\n  web: {}\n", "no service 'postfix'"),
    ("version: '3'\n", "no services: mapping"),
    ("services:\n  postfix:\n    environment: 12\n", "must be a list or a mapping"),
    ("services:\n  postfix:\n    environment:\n      - [a]\n", "not a KEY=VALUE string"),
    ("services: [\n", "not valid YAML"),
])
def test_bad_compose_files_are_named_with_line(text: str, words: str) -> None:
    with pytest.raises(InputError) as e:
        fix(text)
    assert words in str(e.value)
    assert str(e.value).startswith("compose file")


def test_service_env_reads_both_forms_like_compose() -> None:
    assert compose.service_env("services:\n  s:\n    environment:\n      - A=b=c\n      - B\n      - 'C='\n", "s", "f") == \
        {"A": "b=c", "B": None, "C": ""}
    assert compose.service_env("services:\n  s:\n    environment:\n      A: 1\n      B:\n      C: true\n", "s", "f") == \
        {"A": "1", "B": None, "C": "true"}


def test_a_value_yaml_reads_as_a_broken_number_is_an_input_error() -> None:
    """`RELAYHOST: -_` made ruamel.yaml raise IndexError (found by hypothesis): an internal error, not a refusal."""
    from remediate import yamlin as source
    from remediate.errors import InputError

    with pytest.raises(InputError, match="quote that value|reads as a number"):
        source.parse(b"services:\n  postfix:\n    environment:\n      RELAYHOST: -_\n", "x.yml", what="compose file")


def test_a_service_that_extends_another_is_refused_at_its_line() -> None:
    """extends: merges environment, env_file and image from another service (maybe another file): an edit or a
    restart planned from this service's own lines alone would plan from part of what the container runs."""
    text = ("services:\n  base:\n    environment:\n      RELAYHOST: '[h]:2525'\n  postfix:\n    image: boky/postfix\n"
            "    extends:\n      service: base\n    environment:\n      TZ: UTC\n")
    with pytest.raises(InputError, match=r"^c.yml:7: service 'postfix' uses extends:, so compose merges its "
                                         r"environment") as e:
        compose.service_env(text, "postfix", "c.yml")
    assert "drop extends:" in (e.value.hint or "")
    assert compose.service_env(text, "base", "c.yml") == {"RELAYHOST": "[h]:2525"}  # the base itself is read


def test_a_service_missing_from_a_file_with_include_names_the_include() -> None:
    text = "include:\n  - mail.yml\nservices:\n  web:\n    image: nginx\n"
    with pytest.raises(InputError, match=r"no service 'postfix' in the compose file; it may come from this file's "
                                         r"include: \(c.yml:1\)"):
        compose.service_env(text, "postfix", "c.yml")


def test_a_file_of_includes_only_names_them() -> None:
    with pytest.raises(InputError, match=r"c.yml: not a compose file: no services: mapping; it may come from this "
                                         r"file's include: \(c.yml:1\)"):
        compose.service_env("include:\n  - mail.yml\n", "postfix", "c.yml")
