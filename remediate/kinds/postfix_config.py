"""Check that Postfix inside the container runs with what the compose file says (boky/postfix's contract)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, Final

from remediate.contract.plan import Applied, Plan
from remediate.errors import InputError
from remediate.kinds import Param, Step, register
from remediate.mail import resolve
from remediate.probes.containers import container_name, logs
from remediate.probes.docker import postconf_with_defaults
from remediate.probes.waiting import NotYet, Stalled, wait

if TYPE_CHECKING:
    from remediate.contract.host import StepContext as Context

#: boky/postfix's older variables, which its start-up script also writes to these Postfix settings: a service that
#: sets one beside POSTFIX_<key> may run with either value.
LEGACY: Final = {"relayhost": "RELAYHOST", "mynetworks": "MYNETWORKS", "message_size_limit": "MESSAGE_SIZE_LIMIT"}
#: A running value read the same this many times over this many seconds has settled: it will not come right by waiting.
SETTLED: Final = Stalled(reads=5, seconds=5.0)


@register
class PostfixConfig(Step):
    """Postfix inside the container runs with what the compose file says, per boky/postfix's contract."""

    kind = "postfix-config"
    proves_only = True
    params = {
        "container": Param(str, required=True),
        "compose_path": Param(str, required=True),
        "service": Param(str, required=True),
        "keys": Param(list, default=["relayhost", "relay_transport", "relay_domains"]),
        "timeout": Param(int, default=60),
    }

    def validate(self) -> None:
        container_name(self.p["container"], f"{self.spec.where}: step {self.id!r}: container")
        bad = [k for k in self.p["keys"] if not isinstance(k, str) or not k.replace("_", "").isalnum()]
        if bad:
            raise InputError(f"{self.spec.where}: step {self.id!r}: keys must be Postfix parameter names, not {bad[0]!r}")

    def _environment(self, ctx: Context) -> dict[str, str | None]:
        """The service's environment as compose resolves it."""
        current = ctx.read(self.target, self.p["compose_path"])
        if current is None:
            raise InputError(f"{self.p['compose_path']} does not exist")
        return resolve.read(lambda path: ctx.read(self.target, path), self.p["compose_path"], self.p["service"],
                            current.content.decode("utf-8", "replace")).resolved()

    def _expected(self, ctx: Context, defaults: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
        env = self._environment(ctx)
        expected, log_lines = {}, []
        for key in self.p["keys"]:
            custom = env.get(f"POSTFIX_{key}")
            if custom:
                expected[key] = custom
                log_lines.append(f"Applying custom postfix setting: {key}={custom}")
            elif key == "relayhost" and env.get("RELAYHOST"):
                expected[key] = str(env["RELAYHOST"])
            else:
                expected[key] = defaults.get(key, "")
        return expected, log_lines

    def _observe(self, ctx: Context) -> tuple[dict[str, str], dict[str, str]]:
        found = postconf_with_defaults(ctx.transport(self.target), self.p["container"], [str(k) for k in self.p["keys"]])
        if isinstance(found, str):
            raise NotYet(f"postconf in {self.p['container']} failed: {found}")
        return found

    def _differences(self, ctx: Context) -> tuple[list[str], dict[str, str]]:
        """What differs from the compose file (empty when nothing does), and the values seen."""
        current, defaults = self._observe(ctx)
        expected, log_lines = self._expected(ctx, defaults)
        problems = [f"{k} is {current.get(k)!r}, expected {v!r}" for k, v in expected.items() if current.get(k) != v]
        if not problems:
            log = logs(ctx.transport(self.target), self.p["container"])
            problems = [f"no '{line}' in the log" for line in log_lines if not any(line in entry for entry in log)]
        return problems, current

    def plan(self, ctx: Context) -> Plan:
        checks = (f"postconf -h {' '.join(self.p['keys'])} in {self.p['container']} matches {self.p['compose_path']}",)
        earlier = ctx.changed_dependencies(self.spec)
        if earlier:
            return self.planned(f"confirm after {', '.join(earlier)}", checks=checks)
        try:
            problems, _ = self._differences(ctx)
        except NotYet as e:
            return self.planned(str(e), checks=checks)
        if problems:
            return self.planned("the running config differs from the compose file: " + "; ".join(problems), checks=checks)
        return self.planned(f"{', '.join(self.p['keys'])} in {self.p['container']} match {self.p['compose_path']}")

    def apply(self, ctx: Context, plan: Plan) -> None:
        """Nothing to change: this step only verifies."""

    def verify(self, ctx: Context, plan: Plan, applied: Applied) -> str:
        def probe() -> str:
            problems, current = self._differences(ctx)
            if problems:
                raise NotYet("; ".join(problems), seen=tuple(sorted(current.items())))
            return ", ".join(f"{k}={v!r}" for k, v in current.items())

        def overrides(seen: Hashable) -> str:
            return self._overrides(ctx, dict(seen) if isinstance(seen, tuple) else {})

        return wait(self.p["timeout"], f"the effective Postfix config in {self.p['container']} did not match", probe,
                    stalled=Stalled(SETTLED.reads, min(SETTLED.seconds, self.p["timeout"]), overrides))

    def _overrides(self, ctx: Context, running: Mapping[str, str]) -> str:
        """What else in the service's environment gives a running value that differs from the file's: a legacy
        variable of boky/postfix's contract for that setting, or any variable with that very value."""
        env = self._environment(ctx)
        found = []
        for key, value in running.items():
            wanted = env.get(f"POSTFIX_{key}")
            if not wanted or value == wanted:
                continue
            legacy = LEGACY.get(key)
            if legacy and env.get(legacy) is not None:
                agrees = "the value Postfix runs with" if env.get(legacy) == value else "another value"
                found.append(f"the service also sets {legacy}={env[legacy]} ({agrees}), which boky/postfix's start-up "
                             f"also writes to {key}: remove it from {self.p['compose_path']}, or give it the same value")
                continue
            same = [name for name, v in env.items() if v == value and name != f"POSTFIX_{key}"]
            if same:
                found.append(f"{key}={value} is what {', '.join(same)} in the service sets: something in the image "
                             f"writes {key} from it after POSTFIX_{key}")
        return "; ".join(found) or "nothing in the service's environment explains it: the image may write it itself"
