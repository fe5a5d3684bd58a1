"""bench/fleet: the five operations as a pyinfra deploy (run by fleet.py with pyinfra's own venv)."""

from pyinfra import host
from pyinfra.operations import files, server
from pyinfra.operations.util import any_changed

compose = f"{host.data.dir}/docker-compose.yml"
relay = files.replace(name="relay over LMTP", path=compose, text=r"RELAYHOST=\[127\.0\.0\.11\]:2525",
                      replace="POSTFIX_relay_transport=lmtp:[127.0.0.11]:2525", backup=True)
domains = files.replace(name="prune relay_domains", path=compose, text=r"POSTFIX_relay_domains=kuma8088\.com, m8088\.com",
                        replace="POSTFIX_relay_domains=kuma8088.com", backup=True)
# `_if=[a, b]` would mean all of them changed: the restart runs when any of the two edits changed something.
server.shell(name="restart stand-in", commands=["true"], _if=any_changed(relay, domains))
server.shell(name="delivered", commands=[f"grep -q 'status=sent.*Saved' {host.data.dir}/mail.log"])
