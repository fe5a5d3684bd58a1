"""bench/fleet: the five operations as a bare paramiko script: one connection and five commands per host, 20 hosts
at a time, each socket with TCP_NODELAY and AES-GCM (as remediate's). Usage: paramiko_script.py KEY KNOWN_HOSTS PORT USER
DIR_TEMPLATE ADDRESS..."""

import socket
import sys
from concurrent.futures import ThreadPoolExecutor

import paramiko

KEY, KNOWN, PORT, USER, TEMPLATE, *ADDRESSES = sys.argv[1:]
NOT_GCM = ["aes128-ctr", "aes192-ctr", "aes256-ctr", "aes128-cbc", "aes192-cbc", "aes256-cbc", "3des-cbc"]


def run(client: paramiko.SSHClient, command: str) -> tuple[int, str]:
    _, out, _ = client.exec_command(command)
    text = out.read().decode()
    return out.channel.recv_exit_status(), text


def one(index_address: tuple[int, str]) -> bool:
    index, address = index_address
    compose = TEMPLATE.format(n=index + 1) + "/docker-compose.yml"
    client = paramiko.SSHClient()
    client.load_host_keys(KNOWN)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    # Without TCP_NODELAY each command's small writes wait on Nagle (about 45 ms a command): not a fair floor.
    sock = socket.create_connection((address, int(PORT)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # AES-GCM, as remediate prefers it: paramiko's default aes128-ctr checks an HMAC in Python on every packet. The
    # lab's OpenSSH offers GCM, so the other ciphers are simply disabled (paramiko's public way to choose).
    client.connect(address, port=int(PORT), username=USER, key_filename=KEY, allow_agent=False, look_for_keys=False,
                   sock=sock, disabled_algorithms={"ciphers": NOT_GCM})
    try:
        _, backed = run(client, f"if grep -qE 'RELAYHOST=|m8088.com' {compose}; then "
                                f"cp -p {compose} {compose}.backup-$(date +%s%N) && echo changed; fi")
        run(client, f"sed -i 's/RELAYHOST=\\[127.0.0.11\\]:2525/POSTFIX_relay_transport=lmtp:[127.0.0.11]:2525/' {compose}")
        run(client, f"sed -i 's/POSTFIX_relay_domains=kuma8088.com, m8088.com/POSTFIX_relay_domains=kuma8088.com/' {compose}")
        if "changed" in backed:
            run(client, "true")
        code, _ = run(client, f"grep -q 'status=sent.*Saved' {TEMPLATE.format(n=index + 1)}/mail.log")
        return code == 0
    finally:
        client.close()


with ThreadPoolExecutor(max_workers=20) as pool:
    sys.exit(0 if all(pool.map(one, enumerate(ADDRESSES))) else 1)
