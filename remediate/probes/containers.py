"""Docker facts of a host: a container's state and environment, its log, an image, and which compose it has."""

from __future__ import annotations

import json
from typing import Final

from ruamel.yaml import YAML

from remediate.errors import RemediateError, StepError
from remediate.mail import compose
from remediate.probes.docker import CONTAINER_NAME as CONTAINER_NAME  # re-exported: docker's reads, written once
from remediate.probes.docker import LOG_TAIL as LOG_TAIL
from remediate.probes.docker import NoSuchContainer as NoSuchContainer
from remediate.probes.docker import container_name as container_name
from remediate.probes.docker import inspect as inspect
from remediate.probes.docker import logs as logs
from remediate.probes.docker import postconf as postconf
from remediate.probes.facts import of as facts_of
from remediate.transport import Transport

# One round trip, and no Python start-up for v1: v2 if the docker CLI has compose, else v1 if installed.
COMPOSE_PROBE: Final = ("if docker compose version >/dev/null 2>&1; then echo v2; "
                        "elif command -v docker-compose >/dev/null 2>&1; then echo v1; fi")
# boky/postfix's environment contract: images known to follow it, and the line its start-up logs for each setting.
POSTFIX_IMAGES: Final = ("boky/postfix", "bokysan/postfix")
CONTRACT_LOG: Final = "Applying custom postfix setting:"


def image_follows_contract(image: str, known: list[str]) -> bool:
    """image is one of known under any registry, tag or digest (registry.example:5000/boky/postfix:v4 is boky/postfix)."""
    return bool(image) and _repository(image) in {_repository(k) for k in known}


def repository(image: str) -> str:
    """The image's repository without registry, tag or digest: what postfix_images lists."""
    return _repository(image)


def _repository(image: str) -> str:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)
    if ":" in last[-1]:
        name = name[: len(name) - len(last[-1]) + last[-1].index(":")]
    parts = name.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]
    if parts[0] == "library":
        parts = parts[1:]
    return "/".join(parts).lower()


def image_env(transport: Transport, image_id: str) -> dict[str, str]:
    """The environment an image sets itself (so it is not mistaken for drift)."""
    result = transport.run(["docker", "image", "inspect", "--", image_id])
    return env_list(json.loads(result.stdout)[0]["Config"]["Env"]) if result.ok else {}


def env_list(items: list[str] | None) -> dict[str, str]:
    return dict(item.partition("=")[::2] for item in items or [])


def compose_command(transport: Transport) -> list[str]:
    """`docker compose` (v2) when the host has it, else `docker-compose` (v1); asked once per connection."""
    facts = facts_of(transport)
    if facts.compose_command is None:
        # Asked as the compose commands will run (through sudo when the host's become says so): a plugin only the
        # login user has (~/.docker/cli-plugins) is no use to root. Where sudo will not run sh, docker itself asks.
        try:
            found = transport.shell(COMPOSE_PROBE, display="which compose").stdout.strip()
        except RemediateError:
            found = "v2" if transport.run(["docker", "compose", "version"]).ok else \
                "v1" if transport.run(["docker-compose", "version"]).ok else ""
        if found not in ("v1", "v2"):
            raise StepError(f"{transport.name} has neither `docker compose` nor `docker-compose`",
                            hint="install the compose plugin or docker-compose on the host")
        facts.compose_command = ("docker", "compose") if found == "v2" else ("docker-compose",)
    return list(facts.compose_command)


def compose_environment(transport: Transport, folder: str, path: str, service: str,
                        text: str | None = None) -> dict[str, str | None]:
    """The service's environment as the host's own compose resolves it (`config`), run as `up` runs it. text: the
    file's content, so that a refusal can say what in it needs compose v2."""
    base = compose_command(transport)
    wanted = ["config", "--format", "json"] if base == ["docker", "compose"] else ["config"]
    result = transport.run([*base, "--project-directory", folder, "-f", path, *wanted])
    if not result.ok:
        raise cannot_read(transport, base, path, result.output, compose.needs_v2(text, path) if text else [])
    doc = YAML(typ="safe").load(result.stdout) or {}
    env = ((doc.get("services") or {}).get(service) or {}).get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): None if v is None else str(v) for k, v in env.items()}


def compose_version(transport: Transport, base: list[str]) -> str:
    """The compose's version (2.40.3, 1.29.2), asked only when it is to be named (v1 starts Python to answer)."""
    result = transport.run([*base, "version", "--short"])
    version = result.stdout.strip().splitlines()[:1] if result.ok else []
    return version[0].lstrip("v") if version else "(version unknown)"


def cannot_read(transport: Transport, base: list[str], path: str, output: str, needs_v2: list[str]) -> StepError:
    """The host's compose refused the file: which compose it is, and advice that fits that compose."""
    said = output.strip()[-300:]
    named = f"{' '.join(base)} {compose_version(transport, base)}"
    if base != ["docker-compose"]:
        return StepError(f"{transport.name}: {named} (compose v2) cannot read {path}: {said}",
                         hint="compose would refuse `up` too; fix the file first")
    v1 = f"{named} (compose v1; `docker compose` (v2) was not found there: `docker compose version` fails)"
    if needs_v2:
        return StepError(f"{transport.name}: {v1} cannot read {path}: {said}; the file needs compose v2: it uses "
                         f"{', '.join(needs_v2)}, which compose v1 does not know, so its `up` would refuse it too",
                         hint="install the docker compose v2 plugin on the host (remediate uses it once `docker compose "
                              "version` works), or write the file in a form compose v1 reads")
    return StepError(f"{transport.name}: {v1} cannot read {path}: {said}",
                     hint="compose v1 would refuse `up` too: fix the file first, or, if it is written for compose v2, "
                          "install the docker compose v2 plugin on the host")
