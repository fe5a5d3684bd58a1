"""Relay over LMTP: RELAYHOST (SMTP) becomes POSTFIX_relay_transport=lmtp:[host]:port, where compose reads it."""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING

from remediate.contract import validate
from remediate.contract.plan import Plan
from remediate.errors import InputError
from remediate.kinds import Param, register
from remediate.kinds.compose_env import OVERRIDE, ComposeEnvEdit, describe, via
from remediate.mail import compose, envfiles, nexthop, resolve
from remediate.probes.containers import compose_environment

if TYPE_CHECKING:
    from remediate.contract.host import StepContext as Context


@register
class RelayTransport(ComposeEnvEdit):
    """Replace RELAYHOST (SMTP) by POSTFIX_relay_transport=lmtp:[host]:port, where compose reads it from."""

    kind = "relay-transport"
    outputs = ("relay_transport", "lmtp_host", "lmtp_port", "relay_before")
    params = {
        **ComposeEnvEdit.params,
        "lmtp_host": Param((str, type(None)), help="the LMTP server; empty: the host of the RELAYHOST value found"),
        "lmtp_port": Param(int, default=2525, help="the LMTP port"),
        "relayhost_key": Param(str, default="RELAYHOST"),
        "transport_key": Param(str, default="POSTFIX_relay_transport"),
        "compose_config": Param(bool, default=True, help="when the value is interpolated or in an env_file, check "
                                                         "remediate's reading against the host's own `compose config`"),
    }

    def validate(self) -> None:
        super().validate()
        at = f"{self.spec.where}: step {self.id!r}"
        if self.p["lmtp_host"]:
            self.p["lmtp_host"] = validate.host(self.p["lmtp_host"], f"{at}: lmtp_host")
        self.p["lmtp_port"] = validate.port(self.p["lmtp_port"], f"{at}: lmtp_port")

    def override_hint(self) -> str:
        return (f"-e shared_env_file=override leaves it alone and puts the fix in the service's environment: (compose "
                f"prefers it to env_file:): {self.p['transport_key']}=lmtp:[host]:port and {self.p['relayhost_key']}= "
                "(empty: boky/postfix then sets no relayhost)")

    def plan(self, ctx: Context) -> Plan:
        env = self.service_env(ctx)
        old_key, new_key = self.p["relayhost_key"], self.p["transport_key"]
        olds, news = env.definitions.get(old_key, []), env.definitions.get(new_key, [])
        written = env.effective(old_key)
        relay = None if written is None or _blank(written) else written  # RELAYHOST= written empty: no relayhost
        source = relay or env.effective(new_key)
        host, before, notes = self._host(env, source)
        if source is not None and (source.interpolated or source.kind == "env_file") and self.p["compose_config"]:
            notes.append(self._as_compose_reads(ctx, env, source))
        wanted = nexthop.lmtp(host, self.p["lmtp_port"])
        if not nexthop.is_valid_lmtp(wanted):
            raise InputError(f"{self.path}: the edit would give {new_key}={wanted}, which is not a valid Postfix next hop",
                             hint="pass the mailbox host with -e lmtp_host=ADDRESS")
        outputs = {"relay_transport": wanted, "lmtp_host": host, "lmtp_port": self.p["lmtp_port"], "relay_before": before}
        if relay is None and news and news[-1].value == wanted:
            unset = f"{old_key} is unset" if written is None else \
                f"{old_key} is empty ({written.where}), so boky/postfix sets no relayhost"
            return self.planned(f"{new_key} is already {wanted} ({news[-1].where}) and {unset}", outputs=outputs)
        shared = [d for d in (*olds, *news) if d.kind == "env_file" and env.outside(d.file)]
        if shared and self.shared_mode == OVERRIDE:
            texts = {self.path: compose.edit_env(env.compose_text, self.p["service"],
                                                 set_={**({old_key: ""} if olds else {}), new_key: wanted}, name=self.path)}
            notes.append(f"{', '.join(dict.fromkeys(d.file for d in shared))} is outside the project folder {env.folder} "
                         f"and left alone: the service's environment: wins over it"
                         + (f" ({old_key}= empty: boky/postfix then sets no relayhost)" if olds else ""))
        else:
            texts = self._edits(env, olds, news, wanted)
        was = describe(source) if source is not None else f"{old_key} (unset)"
        where = ", ".join(sorted(texts))
        return self.planned_edit(ctx, texts, f"relay over LMTP: {was} becomes {new_key}={wanted} (in {where})"
                                        + "".join(f"; {n}" for n in notes), outputs=outputs)

    def _host(self, env: resolve.ServiceEnv, source: resolve.Definition | None) -> tuple[str, str, list[str]]:
        """The LMTP host, from lmtp_host or the value compose resolves; that value ("" when none); and what the
        operator should know."""
        if self.p["lmtp_host"]:
            return self.p["lmtp_host"], "" if source is None or source.value is None else source.value.strip("'\""), []
        old_key, new_key = self.p["relayhost_key"], self.p["transport_key"]
        if source is None:
            files = ", ".join(path for path, _ in env.env_files) or "none"
            raise InputError(f"{self.path}: no {old_key} or {new_key} in service {self.p['service']!r}: neither in its "
                             f"environment: nor in its env_file(s) ({files})",
                             hint="pass the mailbox host with -e lmtp_host=ADDRESS")
        value = self.resolved(source, "set the variable in the project's .env, or pass -e lmtp_host=ADDRESS")
        notes: list[str] = []
        if source.interpolated:
            notes.append(f"{source.key} is interpolated{via(env, source)}")
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
            return validate.host(hop.host, source.where), value, notes
        except InputError:
            raise InputError(f"{source.where}: {source.key}={source.text} resolves to {value!r}, whose host {hop.host!r} "
                             f"is not a hostname or address, so compose would produce "
                             f"{nexthop.lmtp(hop.host, self.p['lmtp_port'])!r}",
                             hint="pass the mailbox host with -e lmtp_host=ADDRESS") from None

    def _as_compose_reads(self, ctx: Context, env: resolve.ServiceEnv, source: resolve.Definition) -> str:
        """Cross-check with the host's own compose (when the file on the host is the one being read); refuse if
        the two readings differ, since an edit made from the wrong reading would be a wrong edit."""
        transport = ctx.transport(self.target)
        on_host = transport.read(self.path)
        if on_host is None or on_host.content.decode("utf-8", "replace") != env.compose_text:
            return "not cross-checked with the host's compose: an earlier step of this run changes the file first"
        theirs = compose_environment(transport, posixpath.dirname(self.path), self.path, self.p["service"],
                                     env.compose_text)
        if theirs.get(source.key) != source.value:
            raise InputError(f"{source.where}: remediate reads {source.key} as {source.value!r}, but the host's own "
                             f"compose reads {theirs.get(source.key)!r}; refusing an edit made from either reading",
                             hint="the shell environment compose sees may set it; pass -e lmtp_host=ADDRESS, or make "
                                  "the file say it plainly")
        return f"the host's own `compose config` reads {source.key} the same"

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


def _blank(definition: resolve.Definition) -> bool:
    """KEY= written empty (not a variable that happens to resolve to nothing)."""
    return definition.value == "" and definition.text.strip() in ("", '""', "''")
