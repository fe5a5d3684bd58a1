"""user-data-agrees: a local Terraform user_data.sh sets the relay as the compose file does."""

from __future__ import annotations

import re

from remediate.contract.params import Param
from remediate.diagnostics import CheckType, Facts, Verdict, register

KEYS = ("RELAYHOST", "POSTFIX_relay_transport", "POSTFIX_relay_domains")


@register
class UserDataAgrees(CheckType):
    """The provisioning script writes the same relay settings as the compose file (read on the operator's machine)."""

    name = "user-data-agrees"
    params = {
        "path": Param((str, type(None)), default="", help="the local user_data.sh (empty: the check is left out)"),
        "compose_path": Param(str, required=True),
        "service": Param(str, required=True),
    }

    def run(self, facts: Facts) -> Verdict | None:
        if not self.p["path"] or facts.local is None:
            return None
        env = facts.compose(self.p["compose_path"], self.p["service"])
        return drift(facts, self.p["path"], *(env.get(k) or "" for k in KEYS))


def drift(facts: Facts, path: str, relayhost: str, transport_value: str, domains: str) -> Verdict:
    assert facts.local is not None
    state = facts.local.read(path)
    if state is None:
        return Verdict(None, f"{path} does not exist")
    text = state.content.decode("utf-8", "replace")

    def value(key: str) -> str:
        match = re.search(rf"\b{key}=([^\"'#\n]*?)[ \t]*(?:[\"'#]|$)", text, re.M)
        return match.group(1) if match else ""

    pairs = zip(KEYS, (relayhost, transport_value, domains))
    differ = [f"{k}: compose {v or '(unset)'!s}, user_data {value(k) or '(unset)'}" for k, v in pairs if value(k) != v]
    if not differ and relayhost:  # agreeing on the broken value is not agreement worth a tick
        return Verdict(False, f"{path} agrees with the compose file, but both still relay with "
                              f"RELAYHOST={relayhost} (SMTP)")
    return Verdict(not differ, "; ".join(differ) or f"{path} agrees with the compose file")
