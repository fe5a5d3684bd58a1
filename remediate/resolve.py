"""A compose service's environment as compose resolves it (env_file, .env, ${VAR}), and where each value is written."""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from . import compose, envfiles
from .errors import InputError
from .transport import FileState

Reader = Callable[[str], "FileState | None"]
DOTENV: Final = ".env"


@dataclass(frozen=True)
class Definition:
    """Where one variable is written, what is written there, and what compose makes of it."""

    key: str
    file: str
    line: int  # 1-based
    kind: str  # "environment" or "env_file"
    text: str  # as written (after KEY=)
    value: str | None  # as compose reads it; None when it cannot be resolved (see error)
    error: str = ""

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def interpolated(self) -> bool:
        return bool(envfiles.references(self.text))


@dataclass
class ServiceEnv:
    """Everything compose would put in one service's environment, and where it comes from."""

    compose_path: str
    compose_text: str
    service: str
    node: dict[str, Any]
    dotenv: dict[str, str]
    dotenv_lines: dict[str, envfiles.EnvLine]
    env_files: list[tuple[str, str]] = field(default_factory=list)  # (path, text), in compose order
    definitions: dict[str, list[Definition]] = field(default_factory=dict)  # key -> every place, lowest first

    def effective(self, key: str) -> Definition | None:
        """The definition compose uses: the environment: entry, else the last env_file that sets it."""
        found = self.definitions.get(key) or []
        return found[-1] if found else None

    def resolved(self) -> dict[str, str | None]:
        """KEY -> value, as the container will get it."""
        return {k: d[-1].value for k, d in self.definitions.items()}

    @property
    def image(self) -> str:
        return str(self.node.get("image") or "")


def read(reader: Reader, compose_path: str, service: str, text: str | None = None) -> ServiceEnv:
    """Resolve a service's environment; `text` is the compose file's content when the caller has it already."""
    if text is None:
        state = reader(compose_path)
        if state is None:
            raise InputError(f"{compose_path}: the compose file does not exist", hint="check compose_dir and compose_file")
        text = _decode(state, compose_path)
    node = compose.service_node(compose.parse(text, compose_path), service, compose_path)
    folder = posixpath.dirname(compose_path)
    dotenv_state = reader(posixpath.join(folder, DOTENV))
    dotenv_name = posixpath.join(folder, DOTENV)
    dotenv_lines = envfiles.parse(_decode(dotenv_state, dotenv_name), dotenv_name) if dotenv_state else []
    dotenv = envfiles.values(dotenv_lines)
    env = ServiceEnv(compose_path, text, service, node, dotenv, {line.key: line for line in dotenv_lines})
    for path in _env_file_paths(node, compose_path):
        full = path if path.startswith("/") else posixpath.normpath(posixpath.join(folder, path))
        state = reader(full)
        if state is None:
            raise InputError(f"{compose_path}: env_file {path} of service {service!r} does not exist ({full})",
                             hint="compose would refuse to start the service too")
        content = _decode(state, full)
        env.env_files.append((full, content))
        for line in envfiles.parse(content, full, dotenv):
            env.definitions.setdefault(line.key, []).append(
                Definition(line.key, full, line.line, "env_file", line.raw, line.value))
    for entry in compose.entries(text, service, compose_path):
        if entry.value is None:
            continue  # `- KEY` alone passes the shell's value through: nothing written here
        try:
            value: str | None = envfiles.interpolate(entry.value, dotenv, f"{compose_path}:{entry.line + 1}")
            error = ""
        except envfiles.Unresolved as e:
            value, error = None, e.reason
        env.definitions.setdefault(entry.key, []).append(
            Definition(entry.key, compose_path, entry.line + 1, "environment", entry.value, value, error))
    return env


def _decode(state: FileState, name: str) -> str:
    try:
        return state.content.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{name}: not UTF-8 text; refusing to read it as compose would") from None


def _env_file_paths(node: dict[str, Any], name: str) -> list[str]:
    value = node.get("env_file")
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    paths = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("path"), str):
            paths.append(item["path"])
        elif isinstance(item, str):
            paths.append(item)
        else:
            raise InputError(f"{name}: env_file entry {item!r} is neither a path nor a mapping with path:")
    return paths
