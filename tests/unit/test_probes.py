"""Probes at the transport seam: where Postfix listens, and the dialogue's fallback when sshd refuses forwarding."""

from __future__ import annotations

import math
from typing import Any

import pytest

from remediate.mail import smtp
from remediate.probes import dialogue
from remediate.probes.listen import smtp_listener
from remediate.transport import ForwardingRefused

from .fakes import FakeTransport


@pytest.mark.parametrize(("service", "env", "override", "expected"), [
    ({}, {}, "10.9.9.9", ("10.9.9.9", 25, "smtp_address is set")),
    ({"ports": ["10.0.0.5:25:25"]}, {}, "", ("10.0.0.5", 25, "ports: 10.0.0.5:25:25")),
    ({"ports": ["2525:25/tcp"]}, {}, "", ("127.0.0.1", 2525, "ports: 2525:25/tcp publishes it on every address")),
    ({"ports": ["[::1]:25:25"]}, {}, "", ("::1", 25, "ports: [::1]:25:25")),
    ({"ports": [{"target": 25, "published": 587, "host_ip": "10.1.1.1"}]}, {}, "", ("10.1.1.1", 587, None)),
    ({"ports": ["8080:80", "25"]}, {}, "", ("127.0.0.1", 25, None)),
    ({"network_mode": "host"}, {"POSTFIX_inet_interfaces": "127.0.0.12"}, "",
     ("127.0.0.12", 25, "network_mode: host and POSTFIX_inet_interfaces=127.0.0.12")),
    ({"network_mode": "host"}, {"POSTFIX_inet_interfaces": "all, 10.0.0.7"}, "", ("10.0.0.7", 25, None)),
    ({"network_mode": "host"}, {"POSTFIX_inet_interfaces": "loopback-only"}, "", ("127.0.0.1", 25, None)),
    ({"network_mode": "host"}, {"POSTFIX_inet_interfaces": "all"}, "", ("127.0.0.1", 25, None)),
])
def test_where_postfix_listens_is_read_from_the_service(service: dict[str, Any], env: dict[str, str], override: str,
                                                        expected: tuple[str, int, str | None]) -> None:
    found = smtp_listener(service, env, port=25, override=override)
    assert (found.address, found.port) == expected[:2]
    if expected[2] is not None:
        assert found.why == expected[2]


def test_host_network_without_the_variable_asks_postconf_in_the_container() -> None:
    found = smtp_listener({"network_mode": "host"}, {}, port=25, ask=lambda: "10.2.3.4")
    assert (found.address, found.why) == ("10.2.3.4", "network_mode: host and postconf inet_interfaces = 10.2.3.4 in the container")
    assert smtp_listener({"network_mode": "host"}, {}, port=25, ask=lambda: None).address == "127.0.0.1"


class NoForwarding(FakeTransport):
    """An sshd with AllowTcpForwarding no: every direct-tcpip open is administratively prohibited."""

    opened: int = 0

    def open_tcp(self, host: str, port: int, timeout: float) -> Any:
        self.opened += 1
        self.forwarding = False
        raise ForwardingRefused(f"sshd on {self.name} refuses port forwarding (open failed: AllowTcpForwarding no)")


def host_side(host: str, port: int, commands: tuple[str, ...], timeout: float = dialogue.TIMEOUT,
              source: str = "") -> list[str]:
    limit = math.ceil(timeout * (len(commands) + 2))
    return ["sh", "-c", dialogue.CHOOSER, "sh", dialogue.BASH, dialogue.PYTHON, str(limit + 2), source, host, str(port),
            f"{timeout:g}", str(limit), str(smtp.MAX_LINE), str(smtp.MAX_LINES), str(smtp.MAX_REPLY), *commands]


def test_administratively_prohibited_falls_back_to_the_host_at_once_and_remembers() -> None:
    t = NoForwarding(name="gw")
    commands = ("EHLO remediate.probe", "LHLO remediate.probe", "QUIT")
    t.expect(host_side("10.0.0.5", 2525, commands),
             (0, "tool bash\nconnected\n220 mbox Dovecot ready.\n--end--\n500 5.5.1 Unknown command\n--end--\n"
                 "250-mbox\n250 PIPELINING\n--end--\n221 2.0.0 Bye\n--end--\n", ""))
    verdict, exchange = dialogue.protocol(t, "10.0.0.5", 2525)
    assert verdict == "lmtp"
    assert exchange.greeting == "220 mbox Dovecot ready."
    assert "from gw itself with bash" in exchange.route and "refuses port forwarding" in exchange.route
    verdict, _ = dialogue.protocol(t, "10.0.0.5", 2525)
    assert verdict == "lmtp" and t.opened == 1  # never asked sshd again
    assert len(t.ran) == 2  # one host-side round trip per probe, no retries


@pytest.mark.parametrize(("code", "out", "err", "status"), [
    (10, "tool bash\n", "bash: connect: Connection refused\n", "refused"),
    (124, "tool bash\n", "", "timeout"),
    (10, "tool python3\n", "connect: Connection timed out\n", "timeout"),
    (10, "tool bash\n", "bash: connect: Network is unreachable\n", "unreachable"),
    (13, "", "neither bash nor python3 is on this host\n", "error"),
    (11, "tool bash\nconnected\n--timeout--\n", "", "broken"),
])
def test_host_side_outcomes_map_to_the_same_statuses_as_forwarding(code: int, out: str, err: str, status: str) -> None:
    t = NoForwarding(name="gw", forwarding=False)
    t.expect(host_side("10.0.0.5", 25, ("QUIT",)), (code, out, err))
    exchange = dialogue.talk(t, "10.0.0.5", 25, ("QUIT",))
    assert exchange.status == status, exchange
    assert t.opened == 0
