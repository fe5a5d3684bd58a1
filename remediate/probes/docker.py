"""docker's read commands on a host, each written once: a container's state, its log, Postfix's values inside it.
Nothing here caches (probes.facts does) or changes anything."""

from __future__ import annotations

import json
import re
from typing import Any, Final

from remediate.errors import CommandError, InputError, StepError
from remediate.transport import Transport

LOG_TAIL: Final = "2000"
# docker's container name grammar: [a-zA-Z0-9][a-zA-Z0-9_.-]*
CONTAINER_NAME: Final = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*\Z")
DENIED: Final = ("permission denied while trying to connect to the docker daemon socket",
                 "permission denied while trying to connect to the Docker daemon socket")
#: postconf's running values, a line "---", then its defaults, for the same keys in one round trip.
POSTCONF_WITH_DEFAULTS: Final = 'postconf -h "$@" && echo --- && postconf -dh "$@"'


class NoSuchContainer(CommandError):
    """docker knows no container of that name."""


def container_name(value: Any, where: str) -> str:
    """value, when it is a valid docker container name; else an InputError citing where it came from."""
    if not isinstance(value, str) or not CONTAINER_NAME.match(value):
        raise InputError(f"{where}: {value!r} is not a docker container name",
                         hint="a container name is letters, digits, '_', '.' and '-', starting with a letter or digit")
    return value


def refused(transport: Transport, what: str, output: str) -> None:
    """A docker socket we may not use is a permanent refusal: say so at once, never wait on it."""
    if any(d in output for d in DENIED):
        raise StepError(f"{transport.name}: {what}: the login user may not use the docker socket: {output.strip()[-200:]}",
                        hint="set ansible_become: true (with sudo allowed for docker), or add the user to the docker group")


def inspect(transport: Transport, container: str) -> dict[str, Any] | None:
    """docker inspect of a container, or None when there is no such container."""
    result = transport.run(["docker", "inspect", "--type", "container", "--", container])
    if not result.ok:
        if "No such" in result.output:
            return None
        refused(transport, f"docker inspect {container}", result.output)
        raise CommandError(f"{transport.name}: docker inspect {container} failed: {result.output.strip()}")
    found: dict[str, Any] = json.loads(result.stdout)[0]
    return found


def logs(transport: Transport, container: str) -> list[str]:
    """The container's recent log, stdout and stderr both (Dovecot logs to stderr)."""
    result = transport.run(["docker", "logs", "--tail", LOG_TAIL, "--", container])
    if not result.ok:
        refused(transport, f"docker logs {container}", result.output)
        if "No such container" in result.output:
            raise NoSuchContainer(f"{transport.name}: there is no container {container}")
        raise CommandError(f"{transport.name}: docker logs {container} failed: {result.output.strip()}")
    return result.output.splitlines()


def postconf(transport: Transport, container: str, keys: list[str]) -> dict[str, str] | None:
    """Postfix's effective values of keys inside the container, or None when postconf could not run."""
    found = _postconf(transport, container, keys, with_defaults=False)
    return None if isinstance(found, str) else found[0]


def postconf_with_defaults(transport: Transport, container: str,
                           keys: list[str]) -> tuple[dict[str, str], dict[str, str]] | str:
    """(Postfix's effective values of keys in the container, its defaults for them), in one round trip; or what
    postconf said when it could not run."""
    return _postconf(transport, container, keys, with_defaults=True)


def _postconf(transport: Transport, container: str, keys: list[str],
              with_defaults: bool) -> tuple[dict[str, str], dict[str, str]] | str:
    command = ["sh", "-c", POSTCONF_WITH_DEFAULTS, "sh"] if with_defaults else ["postconf", "-h"]
    result = transport.run(["docker", "exec", "--", container, *command, *keys])
    if not result.ok:
        refused(transport, f"postconf in {container}", result.output)
        return result.output.strip()[-200:]
    now, _, default = result.stdout.partition("---\n") if with_defaults else (result.stdout, "", "")
    return dict(zip(keys, now.splitlines())), dict(zip(keys, default.splitlines()))
