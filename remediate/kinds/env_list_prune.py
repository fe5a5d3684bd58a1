"""Remove items from a list-valued variable (e.g. POSTFIX_relay_domains), keeping its separator."""

from __future__ import annotations

from typing import TYPE_CHECKING

from remediate.contract import validate
from remediate.contract.plan import Plan
from remediate.errors import InputError
from remediate.kinds import Param, register
from remediate.kinds.compose_env import OVERRIDE, ComposeEnvEdit, describe, prune
from remediate.mail import compose, envfiles

if TYPE_CHECKING:
    from remediate.contract.host import StepContext as Context


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
        super().validate()
        self.p["remove"] = validate.strings(self.p["remove"], f"{self.spec.where}: step {self.id!r}: remove")

    def plan(self, ctx: Context) -> Plan:
        env = self.service_env(ctx)
        key = self.p["key"]
        source = env.effective(key)
        if source is None:
            return self.planned(f"{key} is not set in service {self.p['service']!r}")
        value = self.resolved(source, "set the variable in the project's .env")
        pruned, gone = prune(value, [str(x) for x in self.p["remove"]])
        if not gone:
            return self.planned(f"{describe(source)} holds none of {', '.join(map(str, self.p['remove']))}")
        if not pruned:
            raise InputError(f"{source.where}: removing {', '.join(gone)} would leave {key} empty, which unsets it; refusing",
                             hint="remove fewer items, or edit the file by hand")
        override = source.kind == "env_file" and env.outside(source.file) and self.shared_mode == OVERRIDE
        if source.kind == "environment" or override:
            texts = {self.path: compose.edit_env(env.compose_text, self.p["service"], set_={key: pruned}, name=self.path)}
        else:
            content = dict(env.env_files)[source.file]
            texts = {source.file: envfiles.edit(content, source.file, replace={key: (key, pruned)})}
        left = (f"; {source.file} is outside the project folder {env.folder} and left alone: the service's "
                "environment: wins over it") if override else ""
        return self.planned_edit(ctx, texts, f"{key}: remove {', '.join(gone)} ({describe(source)} becomes {pruned}){left}")
