"""Steps that edit a compose service's environment: the relay transport and the relay domains."""

from __future__ import annotations

import posixpath
import re
from typing import TYPE_CHECKING, Any, Final

from .. import compose, envfiles, nexthop, resolve, validate
from ..errors import CommandError, InputError
from ..plan import FileChange, Plan
from ..probes.containers import CONTRACT_LOG, POSTFIX_IMAGES, image_follows_contract, logs
from ..transport import FileState
from . import Param, register
from .file import FileEdit

if TYPE_CHECKING:
    from ..context import Context

SEPARATORS: Final = re.compile(r"[\s,]+")


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
    compose resolves it, and only for a service that follows boky/postfix's environment contract."""

    params = {
        **FileEdit.params,
        "service": Param(str, required=True, help="the compose service whose environment is edited"),
        "container": Param((str, type(None)), help="its container, whose start-up log can prove the contract"),
        "postfix_images": Param(list, default=list(POSTFIX_IMAGES),
                                help="images known to follow boky/postfix's environment contract"),
    }

    def edit(self, ctx: Context, current: FileState | None) -> tuple[bytes | None, str]:
        raise NotImplementedError  # check() plans every file this kind touches

    def service_env(self, ctx: Context) -> resolve.ServiceEnv:
        """The service's environment as compose resolves it, after a contract check; files as planned so far."""
        current = ctx.read(self.target, self.path)
        text = _text(current, self.path, self.spec.where)
        self.refuse_link(ctx, current)
        env = resolve.read(lambda path: ctx.read(self.target, path), self.path, self.p["service"], text)
        self._contract(ctx, env)
        return env

    def _contract(self, ctx: Context, env: resolve.ServiceEnv) -> None:
        if image_follows_contract(env.image, [str(i) for i in self.p["postfix_images"]]):
            return
        container = self.p["container"]
        if container:
            try:
                lines = logs(ctx.transport(self.target), container)
            except CommandError:
                lines = []
            if any(CONTRACT_LOG in line for line in lines):
                return
        seen = f" and its container {container} shows no '{CONTRACT_LOG}' in its log" if container else ""
        raise InputError(
            f"{self.path}: service {self.p['service']!r} runs image {env.image or '(none: it is built here)'}, which is "
            f"not known to follow boky/postfix's environment contract (RELAYHOST -> relayhost, POSTFIX_<key> -> "
            f"postconf){seen}; an image that reads RELAYHOST itself would just lose its mail relay",
            hint="if this image does follow the contract, add it to postfix_images, e.g. -e 'postfix_images=[IMAGE]'")

    def planned(self, ctx: Context, new_texts: dict[str, str], reason: str, **kwargs: Any) -> Plan:
        """A plan writing each changed file, each one also expected by the checks after this step."""
        changes = []
        for path, text in new_texts.items():
            before = ctx.read(self.target, path)
            assert before is not None
            if text.encode("utf-8") == before.content:
                continue
            change = FileChange(path, ctx.target_name(self.target), before.content, text.encode("utf-8"),
                                before.mode, (before.uid, before.gid))
            ctx.expect(change, before)
            changes.append(change)
        return self.plan(reason, files=tuple(changes), **kwargs)


@register
class RelayTransport(ComposeEnvEdit):
    """Replace RELAYHOST (SMTP) by POSTFIX_relay_transport=lmtp:[host]:port, where compose reads it from."""

    kind = "relay-transport"
    outputs = ("relay_transport", "lmtp_host", "lmtp_port")
    params = {
        **ComposeEnvEdit.params,
        "lmtp_host": Param((str, type(None)), help="the LMTP server; empty: the host of the RELAYHOST value found"),
        "lmtp_port": Param(int, default=2525, help="the LMTP port"),
        "relayhost_key": Param(str, default="RELAYHOST"),
        "transport_key": Param(str, default="POSTFIX_relay_transport"),
    }

    def validate(self) -> None:
        at = f"{self.spec.where}: step {self.id!r}"
        if self.p["lmtp_host"]:
            self.p["lmtp_host"] = validate.host(self.p["lmtp_host"], f"{at}: lmtp_host")
        self.p["lmtp_port"] = validate.port(self.p["lmtp_port"], f"{at}: lmtp_port")

    def check(self, ctx: Context) -> Plan:
        env = self.service_env(ctx)
        old_key, new_key = self.p["relayhost_key"], self.p["transport_key"]
        olds, news = env.definitions.get(old_key, []), env.definitions.get(new_key, [])
        source = env.effective(old_key) or env.effective(new_key)
        host, notes = self._host(env, source)
        wanted = nexthop.lmtp(host, self.p["lmtp_port"])
        if not nexthop.is_valid_lmtp(wanted):
            raise InputError(f"{self.path}: the edit would give {new_key}={wanted}, which is not a valid Postfix next hop",
                             hint="pass the mailbox host with -e lmtp_host=ADDRESS")
        outputs = {"relay_transport": wanted, "lmtp_host": host, "lmtp_port": self.p["lmtp_port"]}
        if not olds and news and news[-1].value == wanted:
            return self.plan(f"{new_key} is already {wanted} ({news[-1].where}) and {old_key} is unset", outputs=outputs)
        texts = self._edits(env, olds, news, wanted)
        was = describe(source) if source is not None else f"{old_key} (unset)"
        where = ", ".join(sorted(texts))
        return self.planned(ctx, texts, f"relay over LMTP: {was} becomes {new_key}={wanted} (in {where})"
                                        + "".join(f"; {n}" for n in notes), outputs=outputs)

    def _host(self, env: resolve.ServiceEnv, source: resolve.Definition | None) -> tuple[str, list[str]]:
        """The LMTP host, from lmtp_host or the value compose resolves; and what the operator should know."""
        if self.p["lmtp_host"]:
            return self.p["lmtp_host"], []
        old_key, new_key = self.p["relayhost_key"], self.p["transport_key"]
        if source is None:
            files = ", ".join(path for path, _ in env.env_files) or "none"
            raise InputError(f"{self.path}: no {old_key} or {new_key} in service {self.p['service']!r}: neither in its "
                             f"environment: nor in its env_file(s) ({files})",
                             hint="pass the mailbox host with -e lmtp_host=ADDRESS")
        if source.value is None:
            raise InputError(f"{source.where}: {source.key}={source.text} cannot be resolved as compose would: {source.error}",
                             hint="set the variable in the project's .env, or pass -e lmtp_host=ADDRESS")
        value, notes = source.value, []
        if source.interpolated:
            notes.append(f"{source.key} is interpolated{_via(env, source)}")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            notes.append(f"compose passes the quotes in {source.key}={source.text} on to the container, so Postfix was "
                         f"given {value!r}: the original was probably broken too")
            value = value[1:-1]
        hop = nexthop.parse(value)
        if not value or hop is None:
            raise InputError(f"{source.where}: {source.key}={source.text} resolves to {value!r}, which is not a Postfix "
                             f"next hop, so compose would produce {nexthop.lmtp(value, self.p['lmtp_port'])!r}",
                             hint="fix the value, or pass the mailbox host with -e lmtp_host=ADDRESS")
        try:
            return validate.host(hop.host, source.where), notes
        except InputError:
            raise InputError(f"{source.where}: {source.key}={source.text} resolves to {value!r}, whose host {hop.host!r} "
                             f"is not a hostname or address, so compose would produce "
                             f"{nexthop.lmtp(hop.host, self.p['lmtp_port'])!r}",
                             hint="pass the mailbox host with -e lmtp_host=ADDRESS") from None

    def _edits(self, env: resolve.ServiceEnv, olds: list[resolve.Definition], news: list[resolve.Definition],
               wanted: str) -> dict[str, str]:
        """New text per file: the new key where compose will read it, and the old key gone from every file."""
        old_key, new_key = self.p["relayhost_key"], self.p["transport_key"]
        in_files = [d for d in olds if d.kind == "env_file"]
        texts: dict[str, str] = {}
        if any(d.kind == "environment" for d in olds + news) or not in_files:
            texts[self.path] = compose.edit_env(env.compose_text, self.p["service"], set_={new_key: wanted},
                                                remove=(old_key,), rename=(old_key, new_key), name=self.path)
            home = None
        else:
            home = in_files[-1].file  # the env_file compose reads RELAYHOST from: the new key goes there
            stray = [d for d in news if d.kind == "env_file" and d.file != home]
            if stray:
                raise InputError(f"{stray[0].where}: {new_key} is set here too, and would fight the edit in {home}",
                                 hint="remove one of them by hand first")
        for path, content in env.env_files:
            defined = {d.key for d in olds if d.file == path}
            if path == home:
                texts[path] = envfiles.edit(content, path, replace={old_key: (new_key, wanted)})
            elif defined:
                texts[path] = envfiles.edit(content, path, remove=frozenset(defined))
        return texts


def describe(source: resolve.Definition) -> str:
    """KEY=text (file:line), and what compose makes of it when that differs."""
    resolved = f"; compose reads {source.value!r}" if source.value is not None and source.value != source.text else ""
    return f"{source.key}={source.text} ({source.where}{resolved})"


def _via(env: resolve.ServiceEnv, source: resolve.Definition) -> str:
    names = [n for n in envfiles.references(source.text) if n in env.dotenv_lines]
    if not names:
        return " from defaults only (a variable not in .env resolves to empty, as compose does without it in its environment)"
    folder = posixpath.dirname(env.compose_path)
    return " from " + ", ".join(f"{posixpath.join(folder, '.env')}:{env.dotenv_lines[n].line} ({n})" for n in names)


@register
class EnvListPrune(ComposeEnvEdit):
    """Remove items from a list-valued variable (e.g. POSTFIX_relay_domains), keeping the separator style."""

    kind = "env-list-prune"
    params = {
        **ComposeEnvEdit.params,
        "key": Param(str, required=True, help="the variable holding the list"),
        "remove": Param(list, required=True, help="the items to remove"),
    }

    def validate(self) -> None:
        self.p["remove"] = validate.strings(self.p["remove"], f"{self.spec.where}: step {self.id!r}: remove")

    def check(self, ctx: Context) -> Plan:
        env = self.service_env(ctx)
        key = self.p["key"]
        source = env.effective(key)
        if source is None:
            return self.plan(f"{key} is not set in service {self.p['service']!r}")
        if source.value is None:
            raise InputError(f"{source.where}: {key}={source.text} cannot be resolved as compose would: {source.error}",
                             hint="set the variable in the project's .env")
        pruned, gone = prune(source.value, [str(x) for x in self.p["remove"]])
        if not gone:
            return self.plan(f"{describe(source)} holds none of {', '.join(map(str, self.p['remove']))}")
        if not pruned:
            raise InputError(f"{source.where}: removing {', '.join(gone)} would leave {key} empty, which unsets it; refusing",
                             hint="remove fewer items, or edit the file by hand")
        if source.kind == "environment":
            texts = {self.path: compose.edit_env(env.compose_text, self.p["service"], set_={key: pruned}, name=self.path)}
        else:
            content = dict(env.env_files)[source.file]
            texts = {source.file: envfiles.edit(content, source.file, replace={key: (key, pruned)})}
        return self.planned(ctx, texts, f"{key}: remove {', '.join(gone)} ({describe(source)} becomes {pruned})")


def prune(value: str, remove: list[str]) -> tuple[str, list[str]]:
    """The list without the removed items, joined as it was (', ', ',' or ' '); and what was removed."""
    items = [x for x in SEPARATORS.split(value.strip()) if x]
    separator = ", " if ", " in value else ("," if "," in value else " ")
    gone = [x for x in items if x in remove]
    return separator.join(x for x in items if x not in remove), gone
