"""A compose service as compose resolves it (its image, env_file paths and environment, from .env and ${VAR}), and
where each value is written.

Variables come from the project's `.env` and the defaults written in the file, never from a shell: remediate runs
compose through sudo over SSH, whose environment holds none of the project's variables, so that is what `up` sees.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from dataclasses import field
from typing import Any, Final

from remediate import yamlin as source
from remediate.errors import InputError
from remediate.mail import compose, envfiles
from remediate.records import record
from remediate.transport import FileState

Reader = Callable[[str], "FileState | None"]
DOTENV: Final = ".env"
# How compose turns a project name into one it accepts (compose-go's NormalizeProjectName; v1's is the same but for
# the leading - and _ it keeps).
_NOT_IN_PROJECT: Final = re.compile(r"[^-_a-z0-9]")


@record(frozen=True)
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


@record
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
    image_text: str = ""  # the service's image: as written ("" when it has none)
    image: str = ""  # as compose resolves it ("" when it has none, or cannot be resolved: see image_error)
    image_error: str = ""
    project: str = ""  # the project name compose gives it (.env's COMPOSE_PROJECT_NAME, name:, else the folder)

    def effective(self, key: str) -> Definition | None:
        """The definition compose uses: the environment: entry, else the last env_file that sets it."""
        found = self.definitions.get(key) or []
        return found[-1] if found else None

    def resolved(self) -> dict[str, str | None]:
        """KEY -> value, as the container will get it."""
        return {k: d[-1].value for k, d in self.definitions.items()}

    @property
    def folder(self) -> str:
        """The project folder: the compose file's (remediate runs compose with --project-directory there)."""
        return posixpath.dirname(self.compose_path)

    def outside(self, path: str) -> bool:
        """path is not in the project folder, so other stacks may read it (a shared env_file)."""
        return not posixpath.normpath(path).startswith(self.folder.rstrip("/") + "/")

    @property
    def built(self) -> bool:
        """The service is built here (build:) rather than pulled."""
        return self.node.get("build") is not None

    def built_images(self) -> tuple[str, str]:
        """The names compose gives the image it builds for a service without image: (v2's, v1's)."""
        return f"{self.project}-{self.service}", f"{self.project}_{self.service}"

    def via(self, text: str) -> str:
        """Where the variables text refers to come from: the .env lines that set them, or defaults only."""
        names = [n for n in envfiles.references(text) if n in self.dotenv_lines]
        if not names:
            return (" from defaults only (a variable not in .env resolves to empty, as compose does without it in "
                    "its environment)")
        dotenv = posixpath.join(self.folder, DOTENV)
        return " from " + ", ".join(f"{dotenv}:{self.dotenv_lines[n].line} ({n})" for n in names)


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
    _image(env)
    env.project = _project(compose.parse(text, compose_path), env)
    for written, required in _env_file_paths(node, compose_path):
        path = _interpolated(env, written, f"env_file {written}")
        full = path if path.startswith("/") else posixpath.normpath(posixpath.join(folder, path))
        state = reader(full)
        if state is None:
            if not required:
                continue  # `required: false`: compose skips a missing file too
            resolved = "" if path == written else f"; {written} resolves to {path}{env.via(written)}"
            raise InputError(f"{compose_path}: env_file {written} of service {service!r} does not exist "
                             f"({full}{resolved})", hint="compose would refuse to start the service too")
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


def sibling(env: ServiceEnv, service: str) -> ServiceEnv:
    """Another service of env's compose file, for its image alone (image:, build:, pull_policy), interpolated with
    the same .env; its environment and env_files are not read. One with extends: and neither image: nor build: of
    its own takes its image from the base service, which remediate does not read: PartlyElsewhere."""
    services = compose.parse(env.compose_text, env.compose_path).get("services") or {}
    node = services.get(service)
    if not isinstance(node, dict):
        raise InputError(f"{source.where(env.compose_path, services, service)}: service {service!r} is not a mapping")
    if "extends" in node and node.get("image") is None and node.get("build") is None:
        raise compose.PartlyElsewhere(f"{source.where(env.compose_path, node, 'extends')}: service {service!r} takes "
                                      "its image from the service it extends:, which remediate does not read",
                                      hint="give the service its own image: (or build:), then run again")
    other = ServiceEnv(env.compose_path, env.compose_text, service, node, env.dotenv, env.dotenv_lines,
                       project=env.project)
    _image(other)
    return other


def _decode(state: FileState, name: str) -> str:
    try:
        return state.content.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{name}: not UTF-8 text; refusing to read it as compose would") from None


def _interpolated(env: ServiceEnv, text: str, what: str) -> str:
    """text as compose interpolates it, or the refusal naming why it cannot be."""
    try:
        return envfiles.interpolate(text, env.dotenv, f"{env.compose_path}: {what} of service {env.service!r}")
    except envfiles.Unresolved as e:
        raise InputError(f"{env.compose_path}: {what} of service {env.service!r} cannot be resolved as compose "
                         f"would: {e.reason}", hint="set the variable in the project's .env") from None


def _image(env: ServiceEnv) -> None:
    """The service's image as compose resolves it: interpolated like the rest of the file."""
    written = env.node.get("image")
    env.image_text = "" if written is None else str(written)
    try:
        env.image = envfiles.interpolate(env.image_text, env.dotenv, f"{env.compose_path}: image")
    except envfiles.Unresolved as e:
        env.image, env.image_error = "", e.reason


def _project(doc: Any, env: ServiceEnv) -> str:
    """The project name compose gives this file when run as remediate runs it (no -p): COMPOSE_PROJECT_NAME from
    .env, else the top-level name: (v2), else the folder's name; normalized as compose does."""
    named = doc.get("name") if isinstance(doc, dict) else None
    raw = env.dotenv.get("COMPOSE_PROJECT_NAME") or (str(named) if named else "") or posixpath.basename(env.folder)
    try:
        raw = envfiles.interpolate(raw, env.dotenv, env.compose_path)
    except envfiles.Unresolved:
        pass  # a name: compose cannot resolve: it refuses the file anyway; keep the text for the message
    return _NOT_IN_PROJECT.sub("", raw.lower()).lstrip("-_")


def _env_file_paths(node: dict[str, Any], name: str) -> list[tuple[str, bool]]:
    """(path as written, required), in compose order."""
    value = node.get("env_file")
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    paths = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("path"), str):
            paths.append((item["path"], item.get("required", True) is not False))
        elif isinstance(item, str):
            paths.append((item, True))
        else:
            raise InputError(f"{name}: env_file entry {item!r} is neither a path nor a mapping with path:")
    return paths
