"""Property: for any RELAYHOST value (literal, quoted, interpolated, IPv6, garbage), the relay edit either produces a
valid resolved next hop or refuses. It never produces an invalid one."""

from __future__ import annotations

import posixpath

from hypothesis import given, settings
from hypothesis import strategies as st

from remediate.engine.context import Context, TransportPool
from remediate.errors import InputError
from remediate.inputs.inventory import Host
from remediate.mail import nexthop, resolve
from remediate.transport import FileState

from .fakes import FakeTransport
from .test_compose_corpus import ROOT, relay_step

hosts = st.one_of(
    st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z][a-z0-9-]{0,8}){0,2}", fullmatch=True),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.text(alphabet="[]:$\"' {}-#@/", min_size=0, max_size=6),
)


@st.composite
def relayhosts(draw: st.DrawFn) -> tuple[str, dict[str, str]]:
    """RELAYHOST as written, and the .env beside it."""
    host = draw(hosts)
    shown = f"[{host}]" if draw(st.booleans()) else host
    value = shown + (f":{draw(st.integers(0, 70000))}" if draw(st.booleans()) else "")
    dotenv: dict[str, str] = {}
    how = draw(st.sampled_from(["literal", "quoted", "var", "braced", "default", "parts"]))
    if how == "quoted":
        value = f'"{value}"'
    elif how == "var":
        dotenv["RELAY"] = value
        value = "$RELAY"
    elif how == "braced":
        dotenv["RELAY"] = value
        value = "${RELAY}"
    elif how == "default":
        value = "${UNSET:-" + value.replace("}", "") + "}"
    elif how == "parts":
        dotenv.update(H=host, P=str(draw(st.integers(1, 65535))))
        value = "[${H}]:${P}"
    return value, dotenv


@settings(max_examples=300, deadline=None)
@given(relayhosts(), st.booleans())
def test_the_edit_gives_a_valid_next_hop_or_refuses(relay: tuple[str, dict[str, str]], mapping: bool) -> None:
    value, dotenv = relay
    if any(c in value for c in "\n\r"):
        return
    entry = f"      RELAYHOST: '{value.replace(chr(39), chr(39) * 2)}'\n" if mapping else f"      - 'RELAYHOST={value.replace(chr(39), chr(39) * 2)}'\n"
    t = FakeTransport(name="gw")
    t.put(f"{ROOT}/docker-compose.yml", f"services:\n  postfix:\n    image: boky/postfix\n    environment:\n{entry}")
    if dotenv:
        t.put(f"{ROOT}/.env", "".join(f"{k}='{v}'\n" for k, v in dotenv.items() if "'" not in v and "\n" not in v))
    ctx = Context(host=Host(name="gw", address="x"), vars={}, run_id="R", pool=TransportPool(None, lambda h: t))
    try:
        plan = relay_step().plan(ctx)
    except InputError:
        return  # refused, with a reason: allowed
    files = {path: state for path, state in t.files.items()}
    files.update({f.path: FileState(f.path, f.after, 0o644, 0, 0) for f in plan.files})
    env = resolve.read(files.get, posixpath.join(ROOT, "docker-compose.yml"), "postfix").resolved()
    assert "RELAYHOST" not in env
    assert nexthop.is_valid_lmtp(str(env.get("POSTFIX_relay_transport"))), (value, dotenv, env)
