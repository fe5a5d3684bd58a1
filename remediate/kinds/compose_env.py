"""The base of every compose environment edit, and `compose-env`: set, unset, rename and list edits of variables."""

from __future__ import annotations

import posixpath
import re
from typing import TYPE_CHECKING, Any, Final

from remediate.contract.plan import FileChange, Plan
from remediate.errors import CommandError, InputError, StepError
from remediate.kinds import Param, register
from remediate.kinds.file import FileEdit
from remediate.mail import compose, envfiles, resolve
from remediate.probes.containers import (
    CONTRACT_LOG,
    POSTFIX_IMAGES,
    NoSuchContainer,
    image_follows_contract,
    logs,
    repository,
)
from remediate.probes.facts import of as facts_of
from remediate.transport import FileState, read_ask

if TYPE_CHECKING:
    from remediate.contract.host import StepContext as Context

SEPARATORS: Final = re.compile(r"[\s,]+")
# shared_env_file: what to do with an env_file outside the project folder, which other stacks may read.
REFUSE: Final = "refuse"
OVERRIDE: Final = "override"
EDIT: Final = "edit"
SHARED_MODES: Final = (REFUSE, OVERRIDE, EDIT)


def _text(current: FileState | None, path: str, where: str) -> str:
    if current is None:
        raise InputError(f"{path}: the compose file does not exist", hint=f"check compose_dir and compose_file ({where})")
    if current.content.startswith(b"#!"):
        raise InputError(f"{path}: this is a shell script ({current.content.splitlines()[0][:40].decode('utf-8', 'replace')}), "
                         "not a compose file", hint="the user-data-relay kind edits provisioning scripts such as a "
                                                    "Terraform user_data.sh; point this step at the compose file")
    try:
        return current.content.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: the compose file is not UTF-8 text; refusing to edit it") from None


class ComposeEnvEdit(FileEdit):
    """Base: one service's environment, in its compose file or the env_file that holds a value, resolved as
    compose resolves it; for the POSTFIX_ kinds, only in a service that follows boky/postfix's environment contract."""

    #: Whether the service must follow boky/postfix's contract (its POSTFIX_<key> variables mean postconf).
    contract: bool = True
    params = {
        **FileEdit.params,
        "service": Param(str, required=True, help="the compose service whose environment is edited"),
        "container": Param((str, type(None)), help="its container, whose start-up log can prove the contract"),
        "postfix_images": Param(list, default=list(POSTFIX_IMAGES),
                                help="images known to follow boky/postfix's environment contract"),
        "shared_env_file": Param(str, default=REFUSE, help="an env_file outside the project folder, which other stacks "
                                 "may read: refuse to change it (default); override: leave it alone and set the values "
                                 "in the service's environment:, which compose prefers to env_file:; edit: change it, "
                                 "and every stack that reads it"),
    }

    def validate(self) -> None:
        if self.p["shared_env_file"] not in SHARED_MODES:
            raise InputError(f"{self.spec.where}: step {self.id!r}: shared_env_file must be one of "
                             f"{', '.join(SHARED_MODES)}, not {self.p['shared_env_file']!r}")

    @property
    def shared_mode(self) -> str:
        return str(self.p["shared_env_file"])

    def override_hint(self) -> str:
        """How shared_env_file=override would do this step's work without the shared file (kinds say it better)."""
        return ("-e shared_env_file=override sets the values in the service's environment: instead (compose prefers it "
                "to env_file:)")

    def edit(self, ctx: Context, current: FileState | None) -> tuple[bytes | None, str]:
        raise NotImplementedError  # check() plans every file this kind touches

    def reads_ahead(self) -> list[tuple[str, ...]]:
        asks = super().reads_ahead()  # the compose file, then the .env beside it that compose reads too
        return [*asks, read_ask(posixpath.join(posixpath.dirname(self.path), resolve.DOTENV))] if asks else asks

    def service_env(self, ctx: Context) -> resolve.ServiceEnv:
        """The service's environment as compose resolves it, after a contract check; files as planned so far."""
        current = ctx.read(self.target, self.path)
        text = _text(current, self.path, self.spec.where)
        self.refuse_link(ctx, current)
        env = resolve.read(lambda path: ctx.read(self.target, path), self.path, self.p["service"], text)
        self._contract(ctx, env)
        return env

    @staticmethod
    def resolved(source: resolve.Definition, hint: str) -> str:
        """What compose makes of the value, or the refusal naming why it cannot be read as compose would."""
        if source.value is None:
            raise InputError(f"{source.where}: {source.key}={source.text} cannot be resolved as compose would: "
                             f"{source.error}", hint=hint)
        return source.value

    def _contract(self, ctx: Context, env: resolve.ServiceEnv) -> None:
        if not self.contract:
            return
        if env.image_error:
            raise InputError(f"{self.path}: the image of service {self.p['service']!r} (image: {env.image_text}) cannot "
                             f"be resolved as compose would: {env.image_error}", hint="set the variable in the project's .env")
        known = [str(i) for i in self.p["postfix_images"]]
        names = [env.image] if env.image else list(env.built_images()) if env.built else []
        if any(image_follows_contract(name, known) for name in names):
            return
        container = self.p["container"]
        why_not = self._log_lacks_contract(ctx, container) if container else ""
        if why_not is None:
            return
        raise InputError(f"{self.path}: service {self.p['service']!r} runs {_image_words(env)}, which is not known to "
                         f"follow boky/postfix's environment contract (RELAYHOST -> relayhost, POSTFIX_<key> -> "
                         f"postconf){why_not}; an image that reads RELAYHOST itself would just lose its mail relay",
                         hint=_contract_hint(env, container, why_not))

    def _log_lacks_contract(self, ctx: Context, container: str) -> str | None:
        """None when the container's start-up log shows the contract at work; else why the log does not prove it."""
        transport = ctx.transport(self.target)
        seen = facts_of(transport).contract_log  # one read per container and run
        if container not in seen:
            try:
                lines = logs(transport, container)
                seen[container] = None if any(CONTRACT_LOG in line for line in lines) else \
                    f"; its container {container} shows no '{CONTRACT_LOG}' in its log"
            except NoSuchContainer:
                seen[container] = (f"; its container {container} does not exist (docker: No such container), so no "
                                   "start-up log can prove it either")
            except CommandError as e:
                seen[container] = f"; the log of its container {container} could not be read ({e.message})"
        return seen[container]

    def planned_edit(self, ctx: Context, new_texts: dict[str, str], reason: str, **kwargs: Any) -> Plan:
        """A plan writing each changed file, each one also expected by the checks after this step. A file outside
        the project folder (an env_file other stacks may read) is written only with shared_env_file=edit, and the
        reason then says so."""
        changes = []
        folder = posixpath.dirname(self.path)
        for path, text in new_texts.items():
            before = ctx.read(self.target, path)
            assert before is not None
            if text.encode("utf-8") == before.content:
                continue
            if not posixpath.normpath(path).startswith(folder.rstrip("/") + "/"):
                reason = self._shared(path, folder, reason)
            self.refuse_link(ctx, before)  # an env_file too: never written through a link
            change = FileChange(path, ctx.target_name(self.target), before.content, text.encode("utf-8"),
                                before.mode, (before.uid, before.gid))
            ctx.expect(change, before)
            changes.append(change)
        return self.planned(reason, files=tuple(changes), **kwargs)


    def _shared(self, path: str, folder: str, reason: str) -> str:
        """The reason, saying in words that a shared file changes (shared_env_file=edit); else the refusal."""
        if self.shared_mode == EDIT:
            return (f"{reason}; {path} is outside the project folder {folder}: every stack that reads it changes too "
                    "(shared_env_file=edit)")
        raise InputError(f"{path}: this env_file of service {self.p['service']!r} is outside its project folder {folder}, "
                         f"so other stacks may read it, and the edit ({reason}) would change them too; refusing",
                         hint=f"{self.override_hint()}; or -e shared_env_file=edit changes {path}, and every stack that "
                              "reads it, with the plan saying so")


def _image_words(env: resolve.ServiceEnv) -> str:
    """The service's image as the refusal names it: resolved, and how, when it is interpolated or built."""
    if env.image:
        how = "" if env.image == env.image_text else f" (image: {env.image_text}, resolved{env.via(env.image_text)})"
        return f"image {env.image}{how}"
    if env.built:
        v2, v1 = env.built_images()
        return f"an image built here (build: and no image:; compose names it {v2}, v1 {v1})"
    return "no image (none: neither image: nor build:)"


def _contract_hint(env: resolve.ServiceEnv, container: str | None, why_not: str) -> str:
    """What the operator can do: vouch for the image by a name the check will match, or name the real container."""
    if env.image:
        hint = (f"if this image does follow the contract, add it to postfix_images, e.g. "
                f"-e 'postfix_images=[{repository(env.image)}]'")
    elif env.built:
        v2, v1 = env.built_images()
        hint = (f"if the image built here follows the contract, vouch for it by the name compose gives it: "
                f"-e 'postfix_images=[{v2}, {v1}]'")
    else:
        hint = "give the service an image: (compose refuses a service with neither image: nor build:)"
    if container and "does not exist" in why_not:
        named = env.node.get("container_name")
        names = f"its container_name: {named}" if named else \
            f"compose names it {env.project}-{env.service}-1 (v1: {env.project}_{env.service}_1)"
        hint += f"; or set postfix_container to the service's container ({names})"
    return hint


def describe(source: resolve.Definition) -> str:
    """KEY=text (file:line), and what compose makes of it when that differs."""
    resolved = f"; compose reads {source.value!r}" if source.value is not None and source.value != source.text else ""
    return f"{source.key}={source.text} ({source.where}{resolved})"


def via(env: resolve.ServiceEnv, source: resolve.Definition) -> str:
    return env.via(source.text)


def prune(value: str, remove: list[str]) -> tuple[str, list[str]]:
    """The list without the removed items, joined as it was (', ', ',' or ' '); and what was removed."""
    items = [x for x in SEPARATORS.split(value.strip()) if x]
    separator = ", " if ", " in value else ("," if "," in value else " ")
    gone = [x for x in items if x in remove]
    return separator.join(x for x in items if x not in remove), gone


@register
class ComposeEnv(ComposeEnvEdit):
    """Set, unset, rename and edit list-valued variables of a compose service, where compose reads each one."""

    kind = "compose-env"
    params = {
        **ComposeEnvEdit.params,
        "set": Param(dict, default={}, help="KEY: value to set (where the key is written, else in environment:)"),
        "unset": Param(list, default=[], help="keys to remove from environment: and every env_file"),
        "rename": Param(dict, default={}, help="OLD: NEW, keeping the value as written unless set: gives NEW one"),
        "list-add": Param(dict, default={}, help="KEY: [items] to add to a list-valued variable, keeping its separator"),
        "list-remove": Param(dict, default={}, help="KEY: [items] to remove from a list-valued variable"),
        "require_contract": Param(bool, default=False,
                                  help="refuse unless the service follows boky/postfix's contract (postfix_images)"),
    }

    def validate(self) -> None:
        super().validate()
        at = f"{self.spec.where}: step {self.id!r}"
        if not any(self.p[k] for k in ("set", "unset", "rename", "list-add", "list-remove")):
            raise InputError(f"{at}: compose-env needs at least one of set, unset, rename, list-add, list-remove")
        for name in ("list-add", "list-remove"):
            for key, items in self.p[name].items():
                if not isinstance(items, list) or not items:
                    raise InputError(f"{at}: {name} of {key!r} must be a non-empty list of items")
        self.contract = bool(self.p["require_contract"])

    def plan(self, ctx: Context) -> Plan:
        env = self.service_env(ctx)
        texts = {self.path: env.compose_text, **dict(env.env_files)}
        done: list[str] = []
        for old, new in self.p["rename"].items():
            source = env.effective(str(old))
            if source is not None and env.effective(str(new)) is None:
                value = str(self.p["set"].get(new, source.text))
                self._put(texts, env, source, str(new), value, rename_from=str(old))
                done.append(f"{old} becomes {new}")
        wanted = {str(k): str(v) for k, v in self.p["set"].items() if k not in self.p["rename"].values()}
        for key, items in (*((k, ("add", v)) for k, v in self.p["list-add"].items()),
                           *((k, ("remove", v)) for k, v in self.p["list-remove"].items())):
            how, values = items
            source = env.effective(str(key))
            if source is None and how == "add":
                raise StepError(f"{self.path}: {key} is not set for service {self.p['service']!r}, so its value is the "
                                "image's default, which list-add cannot see: adding would replace it",
                                hint=f"write {key} with its full value first (set: in a step before, or by hand)")
            current = self.resolved(source, "set the variable in the project's .env") if source is not None else ""
            new_value, edited = _list_edit(current, [str(v) for v in values], how)
            if edited:
                wanted[str(key)] = new_value
                done.append(f"{key}: {how} {', '.join(edited)}")
        for key, value in wanted.items():
            source = env.effective(key)
            if source is None or source.value != value:
                self._put(texts, env, source, key, value)
                done.append(f"{key}={value}")
        for key in (str(k) for k in self.p["unset"]):
            for source in env.definitions.get(key, []):
                self._no_override(env, source, f"unset {key}", "compose's environment: can set a variable empty, "
                                                               f"never unset one an env_file sets: set: {{{key}: ''}}")
                texts[source.file] = (envfiles.edit(texts[source.file], source.file, remove=frozenset({key}))
                                      if source.kind == "env_file" else
                                      compose.edit_env(texts[source.file], self.p["service"], remove=(key,), name=source.file))
                done.append(f"unset {key} ({source.where})")
        originals = {self.path: env.compose_text, **dict(env.env_files)}
        changed = {path: text for path, text in texts.items() if text != originals[path]}
        if not changed:
            return self.planned(f"the environment of {self.p['service']!r} already is as asked")
        return self.planned_edit(ctx, changed, "; ".join(dict.fromkeys(done)))

    def _put(self, texts: dict[str, str], env: resolve.ServiceEnv, source: resolve.Definition | None, key: str,
             value: str, rename_from: str | None = None) -> None:
        """Write key=value where compose reads `source` from (renaming it from rename_from), else in environment:;
        in environment: too for a shared env_file with shared_env_file=override."""
        if source is not None and rename_from:
            self._no_override(env, source, f"rename {rename_from}", f"the shared file would keep {rename_from}")
        if source is not None and source.kind == "env_file" and not self._overridden(env, source):
            old = rename_from or key
            texts[source.file] = envfiles.edit(texts[source.file], source.file, replace={old: (key, value)})
            return
        rename = (rename_from, key) if rename_from else None
        texts[self.path] = compose.edit_env(texts[self.path], self.p["service"], set_={key: value},
                                            remove=(rename_from,) if rename_from else (), rename=rename, name=self.path)


    def _overridden(self, env: resolve.ServiceEnv, source: resolve.Definition) -> bool:
        """source is in a shared env_file that shared_env_file=override leaves alone."""
        return source.kind == "env_file" and env.outside(source.file) and self.shared_mode == OVERRIDE

    def _no_override(self, env: resolve.ServiceEnv, source: resolve.Definition, what: str, why: str) -> None:
        if self._overridden(env, source):
            raise InputError(f"{source.where}: shared_env_file=override cannot {what} from the service's environment: "
                             f"({why})", hint="-e shared_env_file=edit changes the shared file, and every stack that "
                                              "reads it")


def _list_edit(value: str, items: list[str], how: str) -> tuple[str, list[str]]:
    """The list with items added (at the end) or removed, joined as it was; and the items that made a difference."""
    if how == "remove":
        return prune(value, items)
    present = [x for x in SEPARATORS.split(value.strip()) if x]
    added = [x for x in items if x not in present]
    separator = ", " if ", " in value or not value.strip() else ("," if "," in value else " ")
    return separator.join(present + added), added
