"""Property: on any generated compose file the edit changes exactly the intended entries, or refuses."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from remediate.errors import InputError
from remediate.mail import compose

WANTED = "lmtp:[10.0.0.5]:2525"
KEYS = ["RELAYHOST", "POSTFIX_relay_transport", "POSTFIX_relay_domains", "ALLOWED_SENDER_DOMAINS", "TZ", "A_B"]
VALUES = st.text(alphabet=st.sampled_from(list("ab:[]#'\" ,.=-_/{}&*!%@1")), min_size=0, max_size=12)


def scalar(text: str, style: str) -> str:
    if style == "double":
        return json.dumps(text)
    if style == "single":
        return "'" + text.replace("'", "''") + "'"
    return text


@st.composite
def compose_files(draw: st.DrawFn) -> str:
    indent = " " * draw(st.sampled_from([2, 4]))
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    mapping = draw(st.booleans())
    keys = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=5, unique=True))
    lines = ["services:", f"{indent}other:", f"{indent * 2}image: x  # keep", f"{indent}postfix:",
             f"{indent * 2}environment:"]
    for key in keys:
        value = draw(VALUES)
        style = draw(st.sampled_from(["plain", "single", "double"]))
        comment = draw(st.sampled_from(["", "  # note", "   # x: y"]))
        if draw(st.booleans()):
            lines.append(draw(st.sampled_from(["", f"{indent * 3}# a comment"])))
        if mapping:
            lines.append(f"{indent * 3}{key}: {scalar(value, style)}{comment}")
        else:
            lines.append(f"{indent * 3}- {scalar(f'{key}={value}', style)}{comment}")
    return eol.join(lines) + eol


def load(text: str) -> object:
    return YAML(typ="rt").load(text)


def env_of(doc: dict, service: str) -> dict:
    env = doc["services"][service].get("environment") or {}
    if isinstance(env, list):
        return dict((item.partition("=")[0], item.partition("=")[2] if "=" in item else None) for item in env)
    return {k: (None if v is None else str(v)) for k, v in env.items()}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(compose_files())
def test_edit_is_exact_or_refused(text: str) -> None:
    try:
        before = load(text)
    except Exception:  # noqa: BLE001 - a generated file that is not YAML: the edit must refuse it
        try:
            compose.edit_env(text, "postfix", set_={"POSTFIX_relay_transport": WANTED}, remove=("RELAYHOST",),
                             rename=("RELAYHOST", "POSTFIX_relay_transport"))
        except InputError:
            return
        raise AssertionError("an unparseable file was edited") from None
    try:
        after_text = compose.edit_env(text, "postfix", set_={"POSTFIX_relay_transport": WANTED}, remove=("RELAYHOST",),
                                      rename=("RELAYHOST", "POSTFIX_relay_transport"))
    except InputError:
        return
    after = load(after_text)
    expected = {k: v for k, v in env_of(before, "postfix").items() if k != "RELAYHOST"}
    expected["POSTFIX_relay_transport"] = WANTED
    assert env_of(after, "postfix") == expected
    assert after["services"]["other"] == before["services"]["other"]
    old_lines, new_lines = text.splitlines(keepends=True), after_text.splitlines(keepends=True)
    touched = entry_lines(before, ("RELAYHOST", "POSTFIX_relay_transport"))
    kept_old = [line for i, line in enumerate(old_lines) if i not in touched]
    kept_new = [line for line in new_lines if WANTED not in line]  # the generated values never hold WANTED
    assert kept_new == kept_old, "a line other than the edited entries changed"


def entry_lines(doc: object, keys: tuple[str, ...]) -> set[int]:
    """0-based lines where the postfix service's entries for these keys start."""
    env = doc["services"]["postfix"]["environment"]  # type: ignore[index]
    if isinstance(env, list):
        return {env.lc.item(i)[0] for i, item in enumerate(env) if str(item).partition("=")[0] in keys}
    return {env.lc.key(k)[0] for k in env if k in keys}
