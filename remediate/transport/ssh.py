"""SSH to one host with paramiko: one connection per run, strict host keys, sudo via become."""

from __future__ import annotations

import logging
import os
import posixpath
import secrets
import shlex
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import field
from pathlib import Path
from typing import Any, Final

import paramiko
from paramiko.common import OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
from paramiko.ssh_exception import NoValidConnectionsError

from remediate import redact
from remediate.contract.host import Host
from remediate.errors import CommandError, ConnectError, HostKeyError
from remediate.records import record
from remediate.transport import ForwardingRefused, Transport
from remediate.transport.agent import MAX_OUTPUT, SUDO_WAIT, Agent, AgentLost, OutputCut, agent_command, by_deadline
from remediate.transport.channel import CHUNK as CHUNK
from remediate.transport.channel import Dialogue, read_bounded
from remediate.transport.endpoint import Endpoint, Link, resolve
from remediate.transport.hostkeys import ClientFiles as ClientFiles
from remediate.transport.hostkeys import Notify, StrictPolicy, fingerprint
from remediate.transport.paramiko_hooks import _PromptAck as _PromptAck
from remediate.transport.paramiko_hooks import _Reasons
from remediate.transport.sudo import SudoDialogue

CONNECT_ATTEMPTS: Final = 3
# paramiko logs expected failures (a refused probe channel) at ERROR; errors reach the user through ours.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
CONNECT_TIMEOUT: Final = 10
SUDO_REJECTED: Final = ("incorrect password", "Sorry, try again", "no password was provided")
SUDO_NOT_ALLOWED: Final = ("is not allowed to execute", "is not in the sudoers file", "may not run sudo")
# Programs remediate runs without stdin that never read it: run under sudo as themselves (see _exec).
READS_NO_STDIN: Final = frozenset({"docker", "docker-compose"})

PasswordSource = Callable[[Host], str]


def _dial(host: str, port: int) -> socket.socket:
    """A TCP connection to host:port, as paramiko opens one: each address the resolver gives, in its order.

    An ASCII name goes to the resolver as bytes: given a str, Python first imports its IDNA codec, 30 ms of CPU
    at the start of every run."""
    name: str | bytes = host.encode("ascii") if host.isascii() else host
    return socket.create_connection((name, port), timeout=CONNECT_TIMEOUT)  # type: ignore[arg-type]


def _retryable(error: BaseException) -> bool:
    if isinstance(error, (HostKeyError, paramiko.BadHostKeyException, paramiko.AuthenticationException)):
        return False
    return isinstance(error, (NoValidConnectionsError, socket.timeout, socket.gaierror, ConnectionError,
                              EOFError, paramiko.SSHException, OSError))


@record
class SSHTransport(Transport):
    """A live SSH connection to one inventory host."""

    host: Host | None = None
    accept_new_host_keys: bool = False
    password_source: PasswordSource | None = None
    notify: Notify = print
    connection: Link | None = None
    _password: str | None = field(default=None, repr=False)
    _token: str = field(default_factory=lambda: secrets.token_hex(8), repr=False)
    _revoked: set[str] = field(default_factory=set, repr=False)
    #: ssh_config and known_hosts, shared by the connections of a run (see ClientFiles).
    files: ClientFiles = field(default_factory=ClientFiles, repr=False)
    #: The remote agents of this connection (see agent.py), by whether they run under sudo.
    _agents: dict[bool, Agent] = field(default_factory=dict, repr=False)
    _agent_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    #: Why commands (under sudo: True) run each in a session of its own rather than in the agent.
    agents_off: dict[bool, str] = field(default_factory=dict)
    #: The most bytes of a command's stdout, and of its stderr, read from the host: past it the command fails (see
    #: OutputCut) and nothing more of it is read.
    max_output: int = MAX_OUTPUT

    @property
    def label(self) -> str:
        h = self.host
        assert h is not None
        return f"{h.name} ({(h.user + '@') if h.user else ''}{h.address}:{h.port or 22})"

    def connect(self) -> SSHTransport:
        """Open the connection (retrying transient failures) and settle how sudo works."""
        assert self.host is not None
        self.connection = self._connection()
        try:
            self._open()
        except BaseException:
            self.connection.close()  # the hops it went through too
            raise
        self._no_delay()
        return self

    def _accept(self, link: Link) -> None:
        """Refuse a server (the host, or a ProxyJump hop before anything goes through it) whose key is @revoked."""
        assert self.host is not None and link.transport is not None
        key = link.transport.get_remote_server_key()
        if key.get_base64() in self._revoked:
            hop = "" if link is self.connection else f"the ProxyJump hop {link.endpoint.where}: "
            raise HostKeyError(f"{self.host.name}: {hop}host key {key.get_name()} {fingerprint(key)} is marked @revoked "
                               "in known_hosts; refusing to connect", hint="find out why it was revoked before anything else")

    def _open(self) -> None:
        """Connect (see _attempts), each failure said as the operator needs it."""
        assert self.host is not None and self.connection is not None
        try:
            self._attempts()
        except HostKeyError:
            raise
        except paramiko.BadHostKeyException as e:
            raise HostKeyError(
                f"{self.host.name}: host key of {e.hostname} CHANGED: known_hosts has {fingerprint(e.expected_key)}, "
                f"the host offered {fingerprint(e.key)}; refusing to connect (this is how a man in the middle looks)",
                hint="find out why the key changed; only then remove the old one with ssh-keygen -R",
            ) from None
        except paramiko.AuthenticationException as e:
            raise ConnectError(f"{self.label}: authentication failed: {e}",
                               hint="check ansible_user and ansible_ssh_private_key_file, or your ssh-agent") from None
        except Exception as e:  # noqa: BLE001 - every other cause is reported with the address
            raise ConnectError(f"{self.label}: cannot connect after {CONNECT_ATTEMPTS} attempts: {redact.text(str(e)) or type(e).__name__}",
                               hint="is the host up and sshd listening on that address and port?") from None

    def _attempts(self) -> None:
        """Connect; a failure that may pass is tried again, CONNECT_ATTEMPTS in all, 0.5 s and then 1 s apart. tenacity
        (and the concurrent.futures it imports) is imported only once a first attempt has failed."""
        assert self.connection is not None
        try:
            return self.connection.open(_dial, _PromptAck, CONNECT_TIMEOUT, self._accept)
        except Exception as e:
            if not _retryable(e):
                raise
        from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

        time.sleep(0.5)
        for attempt in Retrying(stop=stop_after_attempt(CONNECT_ATTEMPTS - 1), wait=wait_exponential(multiplier=1, max=4),
                                retry=retry_if_exception(_retryable), reraise=True):
            with attempt:
                self.connection.open(_dial, _PromptAck, CONNECT_TIMEOUT, self._accept)

    def _no_delay(self) -> None:
        """Small request/response exchanges stall ~40 ms on Nagle + delayed ACK; turn Nagle off."""
        assert self.connection is not None and self.connection.transport is not None
        sock = self.connection.transport.sock
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _connection(self) -> Link:
        h = self.host
        assert h is not None
        return self._link(resolve(self.files.config(), h.address, user=h.user, port=h.port, key_file=h.key_file))

    def _link(self, endpoint: Endpoint) -> Link:
        """The connection to endpoint, through its hops: each with its own client and strict host key checking."""
        via = self._link(endpoint.jump) if endpoint.jump is not None else None
        client = paramiko.SSHClient()
        self._harden(client, endpoint)
        return Link(endpoint, client, via)

    def _harden(self, client: paramiko.SSHClient, endpoint: Endpoint) -> None:
        """known_hosts checking: ssh_config's UserKnownHostsFile (else ~/.ssh/known_hosts) and the inventory's."""
        assert self.host is not None
        files = [Path(p) for p in endpoint.known_hosts] if endpoint.known_hosts is not None \
            else [Path(os.path.expanduser("~/.ssh/known_hosts"))]
        if self.host.known_hosts_file:
            files.append(Path(self.host.known_hosts_file))
        for f in files:
            if f.exists():
                self._revoked |= self.files.known_hosts(client.get_host_keys(), f, self.host.name)
        client.set_missing_host_key_policy(StrictPolicy(self.host, files, self.accept_new_host_keys, self.notify,
                                                         self._revoked))

    def _become_password(self) -> bytes:
        """The sudo password, asked for only when sudo prompts for it, and remembered for this connection."""
        assert self.host is not None
        if self._password is None:
            if self.password_source is None:
                raise ConnectError(f"{self.host.name}: sudo asks for a password", hint="export REMEDIATE_BECOME_PASSWORD")
            self._password = self.password_source(self.host)
            redact.register(self._password)
        return self._password.encode()

    @property
    def interpreter(self) -> tuple[str, ...]:
        """ansible_python_interpreter's python3 (python3 by default), for the agent and for one-shot operations."""
        return self.host.python if self.host is not None and self.host.python else ("python3",)

    @property
    def agent_off(self) -> str | None:
        """Why this connection's commands (as the host's become says) run each in a session of its own, or None."""
        return self.agents_off.get(self.become)

    def _exec(self, argv: Sequence[str], *, stdin: bytes | None, sudo: bool, timeout: float | None) -> tuple[int, bytes, bytes]:
        done = self._exec_agent(argv, stdin, timeout, sudo)
        if done is not None:
            return done
        argv = self.one_shot(argv)
        if not sudo:
            return self._exec_raw(shlex.join(argv), stdin, timeout)
        # Without the marker, only a command known never to read stdin runs under sudo directly, so that a NOPASSWD
        # rule for it applies.
        command, become = self._sudo(argv, marked=bool(stdin) or posixpath.basename(argv[0]) not in READS_NO_STDIN)
        code, out, err = self._exec_raw(command, stdin, timeout, become)
        raw = err.decode("utf-8", "replace")  # matched as sudo wrote it: masking may hide a phrase on a line
        text = redact.text(raw).strip()
        if code != 0 and any(s in raw for s in SUDO_NOT_ALLOWED):
            raise ConnectError(f"{self.name}: sudo refused to run `{argv[0]}`: {text}",
                               hint="remediate runs its commands through sudo as `sh -c ...` and `docker ...`; "
                                    "allow those for the login user in sudoers")
        if code != 0 and any(s in raw for s in SUDO_REJECTED):
            raise ConnectError(f"{self.name}: sudo refused: {text}",
                               hint="check REMEDIATE_BECOME_PASSWORD and the user's sudoers entry")
        return code, out, err

    def _sudo(self, argv: Sequence[str], *, marked: bool) -> tuple[str, SudoDialogue]:
        """The command line that runs argv through sudo, and how to talk to it.

        sudo writes a per-connection prompt on stderr only when it wants the password; the password is sent then,
        and never otherwise, so a NOPASSWD rule never lets it reach the command's stdin. marked: the command
        announces itself on stderr once sudo has run it, and its stdin (or its end, so that a command reading
        stdin is never left waiting) is sent only after that."""
        prompt, marker = f"[remediate sudo {self._token}] password: ", f"remediate-become-{self._token}"
        if marked:
            argv = ["sh", "-c", f'printf "%s\\n" {marker} >&2; exec "$@"', "sh", *argv]
        become = SudoDialogue(prompt.encode(), (marker + "\n").encode() if marked else None, self._become_password)
        return f"sudo -S -p {shlex.quote(prompt)} -H -- {shlex.join(argv)}", become

    def _exec_agent(self, argv: Sequence[str], stdin: bytes | None, timeout: float | None,
                    sudo: bool) -> tuple[int, bytes, bytes] | None:
        """The command in this connection's agent (see agent.py), started at the first command, under sudo for sudo
        commands. None when there is none (turned off, could not start) or it is busy: then a session of its own.
        The agent saves the host an SSH session, a login shell (and sudo) and the tools of each command."""
        off = self._agents_off(sudo)
        if sudo in off or not self._agent_lock.acquire(blocking=False):
            return None
        try:
            agent = self._agents.get(sudo)
            if agent is None:
                try:
                    agent = self._agents[sudo] = self._start_agent(sudo)
                except TimeoutError:
                    raise ConnectError(f"{self.name}: sudo did not start within {SUDO_WAIT:g} s",
                                       hint="check sudo on the host (PAM, a directory service)") from None
                except (paramiko.SSHException, EOFError, OSError) as e:
                    raise ConnectError(f"{self.name}: the SSH connection was lost: {e or type(e).__name__}") from None
            try:
                done = agent.run(argv, stdin, timeout)
            except BaseException as e:
                agent.close()  # a timeout, a lost connection, too long an answer: never reuse an agent in that state
                del self._agents[sudo]
                shown = redact.text(shlex.join(argv))[:200]
                if isinstance(e, OutputCut):
                    raise e.error(self.name, shown, "its answer was not read: the remote agent was ended, and the next "
                                              "command starts a new one") from None
                if isinstance(e, socket.timeout):
                    raise CommandError(f"{self.name}: a command did not finish within {timeout} s: {shown}") from None
                if isinstance(e, (AgentLost, paramiko.SSHException, EOFError, OSError)):
                    raise ConnectError(f"{self.name}: the SSH connection was lost during `{shown}`: "
                                       f"{redact.text(str(e)) or type(e).__name__}") from None
                raise
            if done is None:  # the agent never started (no python3, too old, sudo refused it): nothing ran
                off[sudo] = f"no remote agent{' under sudo' if sudo else ''}: {redact.text(agent.why)}"
                if self.observe is not None:  # -v: say what was seen
                    self.notify(f"{self.name}: {off[sudo]}; each command runs in an SSH session of its own")
                agent.close()
                del self._agents[sudo]
            return done
        finally:
            self._agent_lock.release()

    def _agents_off(self, sudo: bool) -> dict[bool, str]:
        """agents_off, having noted whether the agent is turned off for commands run this way (sudo or not)."""
        off = self.agents_off
        if sudo not in off and os.environ.get("REMEDIATE_NO_AGENT"):
            off[sudo] = "REMEDIATE_NO_AGENT is set"
        if sudo not in off and (self.host is None or not self.host.agent):
            off[sudo] = "remediate_agent is false"
        return off

    def warm(self) -> None:
        """Start the agent now, so that the host starts its python3 while the run goes on preparing; only without
        become: sudo may ask for a password, which is asked for (and sent) only where a command needs it. Whatever
        goes wrong is left for the first command, which starts the agent again and says what it met."""
        if self.become or False in self._agents_off(False) or not self._agent_lock.acquire(blocking=False):
            return
        try:
            if False not in self._agents:
                self._agents[False] = self._start_agent(False)
        except Exception:  # noqa: BLE001 - see above: the first command meets it again
            pass
        finally:
            self._agent_lock.release()

    def _start_agent(self, sudo: bool) -> Agent:
        command = agent_command(self.interpreter)
        if not sudo:
            return Agent(self._open_channel(), self.name, shlex.join(command), limit=self.max_output)
        # As a sudo command of its own (see _sudo): sudo's prompt is answered once, and the token goes only once the
        # agent's marker shows that sudo has started it.
        line, become = self._sudo(command, marked=True)
        return Agent(self._open_channel(), self.name, line, sudo=become, limit=self.max_output)

    def _open_channel(self) -> paramiko.Channel:
        assert self.connection is not None and self.connection.transport is not None
        try:
            channel: paramiko.Channel = self.connection.transport.open_session(timeout=CONNECT_TIMEOUT)
            return channel
        except (paramiko.SSHException, EOFError, OSError) as e:
            raise ConnectError(f"{self.name}: the SSH connection was lost: {e or type(e).__name__}",
                               hint="the host state is recorded in the journal; run `remediate rollback` or `apply` again once it is reachable") from None

    def _exec_raw(self, command: str, stdin: bytes | None, timeout: float | None,
                  become: SudoDialogue | None = None) -> tuple[int, bytes, bytes]:
        channel = self._open_channel()
        channel.settimeout(timeout)
        end = None if timeout is None else time.monotonic() + timeout
        talk = Dialogue(channel, stdin, become, self.max_output, by_deadline(channel.recv_stderr, channel.settimeout, timeout))
        try:
            channel.exec_command(command)
            talk.start()
            out = read_bounded(by_deadline(channel.recv, channel.settimeout, timeout), self.max_output, "stdout")
            left = None if end is None else max(0.0, end - time.monotonic())
            talk.join(left)
            if not channel.status_event.wait(left):  # stdout closed, the command not ended: one deadline for all
                raise TimeoutError()
            code = channel.recv_exit_status()
        except OutputCut as e:
            raise e.error(self.name, redact.text(command)[:200], "its session was closed") from None
        except TimeoutError:
            channel.close()
            raise CommandError(f"{self.name}: a command did not finish within {timeout} s: {redact.text(command)[:200]}") from None
        except (paramiko.SSHException, EOFError, OSError) as e:
            if talk.failure is not None:
                raise talk.failure from None
            raise ConnectError(f"{self.name}: the SSH connection was lost during `{redact.text(command)[:200]}`: {e or type(e).__name__}") from None
        finally:
            channel.close()
        if talk.failure is not None:
            raise talk.failure
        if talk.cut is not None:
            raise talk.cut.error(self.name, redact.text(command)[:200], "its session was closed")
        if code == -1:
            raise ConnectError(f"{self.name}: the SSH connection was lost during `{redact.text(command)[:200]}` (no exit status)")
        return code, out, talk.stderr

    def open_tcp(self, host: str, port: int, timeout: float) -> Any:
        """A direct-tcpip channel (as `ssh -W`); failures raised as the socket errors a local connect gives."""
        assert self.connection is not None and self.connection.transport is not None
        transport = self.connection.transport
        reasons = _Reasons()
        logger = logging.getLogger(transport.get_log_channel())
        logger.addHandler(reasons)
        try:
            channel = transport.open_channel("direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=timeout)
            self.forwarding = True
            return channel
        except paramiko.ChannelException as e:
            # paramiko keeps only a generic text; the server's reason ("Connection refused") is in its log record.
            reason = reasons.last or e.text
            if e.code == OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED:
                self.forwarding = False
                raise ForwardingRefused(f"sshd on {self.name} refuses port forwarding ({reason}: AllowTcpForwarding no "
                                        "or PermitOpen)") from None
            if "refused" in reason.lower():
                raise ConnectionRefusedError(f"{host}:{port}: {reason} (seen from {self.name})") from None
            if "timed out" in reason.lower():
                raise TimeoutError(f"{host}:{port}: {reason} (seen from {self.name})") from None
            raise OSError(f"{host}:{port}: {reason} (seen from {self.name})") from None
        except paramiko.SSHException as e:
            if "timeout" in str(e).lower():
                raise TimeoutError(f"{host}:{port}: no answer within {timeout:g} s (seen from {self.name})") from None
            raise ConnectError(f"{self.name}: the SSH connection was lost: {e}") from None
        finally:
            logger.removeHandler(reasons)

    def close(self) -> None:
        """End the connection, and its agents with it (sshd ends their sessions, and each agent its stdin), without
        closing their channels first: two messages a host, sent host after host at a run's end (bench round 7)."""
        self._agents.clear()
        if self.connection is not None:
            self.connection.close()


def connect(host: Host, *, accept_new_host_keys: bool = False, password_source: PasswordSource | None = None,
            notify: Notify = print, files: ClientFiles | None = None) -> SSHTransport:
    """One connected transport for a host; files: those of the run's other connections, read once."""
    return SSHTransport(name=host.name, become=host.become, host=host, accept_new_host_keys=accept_new_host_keys,
                        password_source=password_source, notify=notify, files=files or ClientFiles()).connect()
