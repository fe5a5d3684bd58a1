"""The sudo password dialogue, once for every use: send the password once at sudo's prompt, take a second prompt as
a wrong password, never echo it, and tell sudo's words apart from the command's once the command announces itself.

Used by a command run under sudo in a session of its own (channel.Dialogue) and by the agent started under sudo
(agent.Agent)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import field

from remediate.errors import ConnectError
from remediate.records import record

#: At most this much is held back while waiting for sudo's prompt or the command's marker: past it, all but a
#: possible beginning of either is the command's (channel.Dialogue) or too much (agent.Agent).
MAX_CHATTER = 1024 * 1024


class WrongPassword(ConnectError):
    """sudo asked again after the password was sent: it refused it."""


@record(frozen=True)
class SudoDialogue:
    """How a command run by sudo is told apart from sudo: sudo's prompt (answered once, with password()), then the
    marker (with its newline) the command prints on stderr once sudo has run it (None: it prints none)."""

    prompt: bytes
    marker: bytes | None
    password: Callable[[], bytes]


@record
class SudoTalk:
    """sudo's side of one channel's stderr until the command runs: feed() it what arrives; it answers the prompt
    once through send() and gives back what is not sudo's (never a prompt, never the password)."""

    dialogue: SudoDialogue
    send: Callable[[bytes], None]
    #: Named in the error of a refused password.
    name: str = ""
    #: Whether the marker came: from then on everything is the command's.
    running: bool = False
    answered: bool = False
    _pending: bytes = field(default=b"", repr=False)

    def feed(self, chunk: bytes) -> bytes:
        """What of chunk (and of what was held back) is not sudo's and cannot be the start of its prompt or the
        marker. Raises WrongPassword at a second prompt, and password()'s own error (no password to give)."""
        if self.running:
            return chunk
        pending, given = self._pending + chunk, bytearray()
        prompt, marker = self.dialogue.prompt, self.dialogue.marker
        while True:
            if prompt in pending:
                before, _, pending = pending.partition(prompt)
                given += before
                self._answer()
            elif marker is not None and marker in pending:
                before, _, after = pending.partition(marker)
                given += before + after
                pending, self.running = b"", True
                break
            else:
                break
        if len(pending) > MAX_CHATTER:  # neither in it: all but what could begin one of them is the command's
            hold = len(prompt) + len(marker or b"")
            given += pending[:-hold]
            pending = pending[-hold:]
        self._pending = pending
        return bytes(given)

    def rest(self) -> bytes:
        """What was held back, at the end of the stream (no prompt or marker can follow)."""
        rest, self._pending = self._pending, b""
        return rest

    def _answer(self) -> None:
        if self.answered:
            raise WrongPassword(f"{self.name + ': ' if self.name else ''}sudo refused the become password",
                                hint="check REMEDIATE_BECOME_PASSWORD and the user's sudoers entry")
        self.send(self.dialogue.password() + b"\n")
        self.answered = True
