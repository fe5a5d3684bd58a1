"""What a host prints is read within bounds: a command's output through the agent or a session of its own (fake
channels at the transport seam that print without end, generated lazily), and an SMTP/LMTP dialogue (real
listeners on loopback that never finish a reply)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator

import pytest

from remediate.errors import CommandError
from remediate.inputs.inventory import Host
from remediate.mail import smtp
from remediate.probes import dialogue
from remediate.probes.dialogue import Exchange
from remediate.transport import agent as agent_module
from remediate.transport.agent import MAX_CHATTER, MAX_LINE, Agent, AgentLost, SudoDialogue
from remediate.transport.local import LocalTransport
from remediate.transport.ssh import CHUNK, SSHTransport

LIMIT = 1 << 20
#: What a fake host prints at most before it stops on its own: the old code read all of it and then went on, so a
#: test of it fails rather than hangs.
BUDGET = 8 * LIMIT
ADDRESS = "127.0.0.21"  # the SMTP listeners' address, and the python3 route's source address


def endless(piece: bytes = b"x" * 4096) -> Iterator[bytes]:
    """Output without end, one piece at a time (the fake channel stops after BUDGET bytes)."""
    while True:
        yield piece


class Channel:
    """A paramiko channel whose command prints `stdout` and `stderr` (iterators of chunks) and counts what it handed
    out: what was read is all that could have been kept."""

    def __init__(self, stdout: Iterable[bytes] = (), stderr: Iterable[bytes] = (), exit_code: int = 0) -> None:
        self.streams = {"stdout": iter(stdout), "stderr": iter(stderr)}
        self.handed = {"stdout": 0, "stderr": 0}
        self.exit_code = exit_code
        self.closed = threading.Event()
        self.ended: set[str] = set()
        self.sent = bytearray()
        self.command = ""
        self.status_event = threading.Event()  # paramiko's: set once the exit status came (here: known at once)
        self.status_event.set()

    def exec_command(self, command: str) -> None:
        self.command = command

    def settimeout(self, timeout: float | None) -> None:
        pass

    def _give(self, stream: str, size: int) -> bytes:
        chunk = b""
        if not self.closed.is_set() and self.handed[stream] < BUDGET:
            chunk = next(self.streams[stream], b"")[:size]
        self.handed[stream] += len(chunk)
        if not chunk:
            self.ended.add(stream)
        return chunk

    def recv(self, size: int) -> bytes:
        chunk = self._give("stdout", size)
        while not chunk and "stderr" not in self.ended and not self.closed.wait(0.01):
            pass  # stdout ends with the command: once it stopped writing stderr too, or its session was closed
        return chunk

    def recv_stderr(self, size: int) -> bytes:
        return self._give("stderr", size)

    def recv_stderr_ready(self) -> bool:
        return False

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def shutdown_write(self) -> None:
        pass

    def recv_exit_status(self) -> int:
        return -1 if self.closed.is_set() else self.exit_code

    def close(self) -> None:
        self.closed.set()


class AgentChannel(Channel):
    """The channel of a remote agent that reads SOURCE (boot_frame) and its token, says it is ready, then answers
    `answer(token)`."""

    def __init__(self, answer: bytes, after: Iterable[bytes] = ()) -> None:
        super().__init__()
        self.answer, self.after = answer, iter(after)

    def recv(self, size: int) -> bytes:
        if self.answer:
            sent = bytes(self.sent)
            assert sent.startswith(agent_module.boot_frame())
            token = sent[len(agent_module.boot_frame()):].split(b"\n", 1)[0]
            first, self.answer = self.answer.replace(b"TOKEN", token), b""
            self.handed["stdout"] += len(first)
            return first
        self.streams["stdout"] = self.after
        return self._give("stdout", size)


def transport(*channels: Channel, agent: bool) -> SSHTransport:
    """An SSH transport whose sessions are the given channels, in order (no connection is made)."""
    host = Host(name="h1", address="192.0.2.1", agent=agent)
    t = SSHTransport(name="h1", host=host, max_output=LIMIT)
    opened = iter(channels)
    t._open_channel = lambda: next(opened)  # type: ignore[method-assign]
    return t


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_a_session_printing_without_end_is_cut_at_the_bound_and_closed(stream: str) -> None:
    flood = Channel(stdout=endless()) if stream == "stdout" else Channel(stderr=endless())
    t = transport(flood, agent=False)
    with pytest.raises(CommandError) as e:
        t.run(["yes"])
    message = str(e.value)
    assert f"`yes` printed more than {LIMIT} bytes on {stream}" in message
    assert f"output cut at {LIMIT} bytes and the command counts as failed (its session was closed)" in message
    assert "it began 'xxxx" in message
    assert flood.closed.is_set(), "the session is closed, so the command stops writing"
    assert flood.handed[stream] <= LIMIT + CHUNK, "nothing was read past the bound (and so nothing kept)"


def test_a_session_at_the_bound_is_read_whole() -> None:
    t = transport(Channel(stdout=iter([b"y" * 4096] * 256), stderr=iter([b"e" * 4096] * 256)), agent=False)
    result = t.run(["yes"])
    assert (len(result.stdout), len(result.stderr)) == (LIMIT, LIMIT)


def test_an_agent_answer_announcing_too_much_is_refused_unread_and_the_next_command_starts_a_new_agent() -> None:
    huge = AgentChannel(b"TOKEN ready\nTOKEN 0 1000000000000000 0\n", after=endless())
    fresh = AgentChannel(b"TOKEN ready\nTOKEN 0 3 0\nok\n")
    t = transport(huge, fresh, agent=True)
    t.max_output = agent_module.MAX_OUTPUT  # the default bound: a header of 10**15 bytes is never believed
    with pytest.raises(CommandError) as e:
        t.run(["journalctl"])
    message = str(e.value)
    assert (f"`journalctl` printed more than {agent_module.MAX_OUTPUT} bytes on stdout, 1000000000000000 bytes in "
            f"all, exit code 0: output cut at {agent_module.MAX_OUTPUT} bytes") in message
    assert "the remote agent was ended, and the next command starts a new one" in message
    assert huge.closed.is_set() and huge.handed["stdout"] < 200, "not a byte of the payload was read"
    assert t.run(["echo", "ok"]).stdout == "ok\n"
    assert fresh.command.startswith("python3 -I -S -c")


def test_an_agent_answer_over_a_lowered_bound_is_refused_on_stderr_too() -> None:
    t = transport(AgentChannel(b"TOKEN ready\nTOKEN 3 10 1048577\n", after=endless()), agent=True)
    with pytest.raises(CommandError, match=f"on stderr, 1048577 bytes in all, exit code 3: output cut at {LIMIT}"):
        t.run(["false"])


def test_an_agent_line_without_end_is_out_of_step_not_read_on() -> None:
    channel = AgentChannel(b"TOKEN ready\n", after=endless())
    agent = Agent(channel, "h1", "python3 -I -S -c ...")
    with pytest.raises(AgentLost, match=f"a line of more than {MAX_LINE} bytes"):
        agent.run(["true"], None, 10)
    assert channel.handed["stdout"] <= MAX_LINE + (1 << 16) + 100


def test_a_login_shell_that_never_lets_the_agent_start_is_not_read_on() -> None:
    channel = AgentChannel(b"", after=endless(b"motd\n" * 800))
    agent = Agent(channel, "h1", "python3 -I -S -c ...")
    with pytest.raises(AgentLost, match=f"printed more than {MAX_CHATTER} bytes before the agent said it was ready"):
        agent.run(["true"], None, 10)
    assert channel.handed["stdout"] <= MAX_CHATTER + (1 << 16) + MAX_LINE


def test_sudo_printing_without_end_never_starts_the_agent_and_nothing_is_sent() -> None:
    channel = Channel(stderr=endless(b"lecture " * 512))
    agent = Agent(channel, "h1", "sudo ...", sudo=SudoDialogue(b"PROMPT:", b"MARKER\n", lambda: b"secret"))
    assert agent.why == f"sudo printed more than {MAX_CHATTER} bytes without starting it"
    assert channel.sent == b"", "neither the password nor the token went"
    assert channel.handed["stderr"] <= MAX_CHATTER + 4096


class Listener:
    """An SMTP listener on loopback (an ephemeral port) that answers each connection with `serve`."""

    def __init__(self, serve: Callable[[socket.socket, threading.Event], None], address: str = ADDRESS) -> None:
        self.serve, self.stop, self.connected = serve, threading.Event(), threading.Event()
        self.server = socket.create_server((address, 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:  # closed
                return
            self.connected.set()
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                self.serve(conn, self.stop)
            except OSError:  # the client went away: what these listeners are for
                return

    def close(self) -> None:
        self.stop.set()
        self.server.close()


def slow_banner(conn: socket.socket, stop: threading.Event) -> None:
    """A greeting that never ends: a `220-` line every 50 ms."""
    n = 0
    while not stop.wait(0.05):
        n += 1
        conn.sendall(b"220-flood.example still greeting, line %d\r\n" % n)


def fast_banner(conn: socket.socket, stop: threading.Event) -> None:
    """A greeting that never ends, as fast as it is read."""
    while not stop.is_set():
        conn.sendall(b"220-flood.example\r\n" * 64)


def huge_line(conn: socket.socket, stop: threading.Event) -> None:
    """A greeting line that never ends."""
    conn.sendall(b"220 ")
    while not stop.is_set():
        conn.sendall(b"x" * 4096)


def polite(conn: socket.socket, stop: threading.Event) -> None:
    """A well-behaved server: a greeting, a multi-line EHLO reply, and a goodbye."""
    conn.sendall(b"220 mx.example ESMTP\r\n")
    for line in conn.makefile("rb"):
        if line.startswith(b"EHLO"):
            conn.sendall(b"".join(b"250-mx.example ext%d\r\n" % i for i in range(12)) + b"250 SMTPUTF8\r\n")
        elif line.startswith(b"QUIT"):
            conn.sendall(b"221 2.0.0 Bye\r\n")
            return
        else:
            conn.sendall(b"502 5.5.2 what?\r\n")


@pytest.fixture
def listen() -> Iterator[Callable[[Callable[[socket.socket, threading.Event], None]], Listener]]:
    made: list[Listener] = []

    def start(serve: Callable[[socket.socket, threading.Event], None]) -> Listener:
        made.append(Listener(serve))
        return made[-1]

    yield start
    for listener in made:
        listener.close()


#: How each route is asked for: port forwarding (here a local socket), the host's bash, the host's python3 (which
#: alone can bind a source address). The host is this machine.
ROUTES: dict[str, tuple[bool | None, str]] = {"forwarded": (None, ""), "bash": (False, ""),
                                               "python3": (False, ADDRESS)}


def probe(route: str, port: int, commands: tuple[str, ...] = ("QUIT",), **bounds: float) -> Exchange:
    """The dialogue by `route`, which must end on its own: a watchdog fails the test if it is still reading."""
    forwarding, source = ROUTES[route]
    t = LocalTransport(name="local", forwarding=forwarding)
    done: list[Exchange | BaseException] = []

    def call() -> None:
        try:
            done.append(dialogue.talk(t, ADDRESS, port, commands, source=source, **bounds))
        except BaseException as e:  # noqa: BLE001 - handed to the test
            done.append(e)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(WATCHDOG)
    assert not thread.is_alive(), f"the dialogue was still reading after {WATCHDOG} s"
    if isinstance(done[0], BaseException):
        raise done[0]
    assert route == "forwarded" or f"with {route}" in done[0].route
    return done[0]


WATCHDOG = 60


@pytest.mark.parametrize("route", ROUTES)
def test_a_greeting_that_never_ends_is_cut_at_the_dialogues_deadline(route: str, listen) -> None:
    exchange = probe(route, listen(slow_banner).port, timeout=30, deadline=1)
    assert exchange.status == "broken", exchange
    assert exchange.detail.startswith("cut short: the greeting: the dialogue's 1 s were up after "), exchange.detail
    assert "beginning '220-flood.example still greeting, line 1'" in exchange.detail
    assert exchange.replies in ((), ("",)) or not exchange.replies[0], "a cut greeting is never taken for one"


@pytest.mark.parametrize("route", ROUTES)
def test_a_reply_of_endless_lines_is_cut_at_its_line_bound(route: str, listen) -> None:
    exchange = probe(route, listen(fast_banner).port, timeout=30, deadline=30)
    assert exchange.status == "broken", exchange
    assert f"cut short: the greeting: more than {smtp.MAX_LINES} lines" in exchange.detail, exchange.detail
    assert f"received {smtp.MAX_LINES} lines" in exchange.detail


@pytest.mark.parametrize("route", ROUTES)
def test_a_line_that_never_ends_is_cut_at_the_line_bound(route: str, listen) -> None:
    exchange = probe(route, listen(huge_line).port, timeout=30, deadline=30)
    assert exchange.status == "broken", exchange
    assert f"cut short: the greeting: a line longer than {smtp.MAX_LINE} bytes" in exchange.detail, exchange.detail
    assert "beginning '220 xxxx" in exchange.detail


def test_over_forwarding_each_reply_has_its_own_time_too(listen) -> None:
    exchange = probe("forwarded", listen(slow_banner).port, timeout=0.5, deadline=30)
    assert exchange.detail.startswith("cut short: the greeting: no complete reply within 0.5 s after "), exchange


@pytest.mark.parametrize("route", ROUTES)
def test_a_polite_server_is_read_whole_on_every_route(route: str, listen) -> None:
    exchange = probe(route, listen(polite).port, ("EHLO remediate.probe", "NOOP", "QUIT"))
    assert exchange.status == "answered" and exchange.detail == "", exchange
    assert exchange.greeting == "220 mx.example ESMTP"
    assert exchange.reply(0).splitlines()[-1] == "250 SMTPUTF8" and len(exchange.reply(0).splitlines()) == 13
    assert (exchange.reply(1), exchange.reply(2)) == ("502 5.5.2 what?\n", "221 2.0.0 Bye\n")


def test_ctrl_c_stops_a_dialogue_that_would_wait_for_minutes(listen) -> None:
    listener = listen(slow_banner)
    code = ("import sys\nfrom remediate.probes import dialogue\nfrom remediate.transport.local import LocalTransport\n"
            f"dialogue.talk(LocalTransport(name='local'), '{ADDRESS}', {listener.port}, timeout=600, deadline=600)\n")
    child = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE)
    try:
        assert listener.connected.wait(WATCHDOG), "the probe never connected"
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=WATCHDOG)
    finally:
        child.kill()
    assert child.returncode != 0 and b"KeyboardInterrupt" in err
