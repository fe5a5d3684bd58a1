"""Make an infrastructure-as-code script (a Terraform user_data.sh) agree with the fixed compose file.

Only compose text is edited: each heredoc that writes a compose file (`cat > .../docker-compose.yml <<'EOF'`,
any delimiter) gets exactly the compose edit, applied to its body parsed as YAML. Shell lines outside a heredoc,
and heredocs that write anything else (a .env file among them), are never touched. Afterwards `bash -n` must
pass and every edited body must still parse.

The script must describe the host being fixed: the relay a heredoc sets before the edit is the one the host had
(relay_before), else the edit is refused with both values. A script this step cannot check fails the plan, naming
the line and why; it never reports "nothing to do": a heredoc that sets the relay in a file named by a variable
(`cat << EOF > $COMPOSE_FILE`), the relay set outside a compose heredoc, or no relay at all.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from typing import TYPE_CHECKING, Final

from remediate.contract.plan import Plan
from remediate.errors import InputError
from remediate.kinds import Param, register
from remediate.kinds.compose_env import prune
from remediate.kinds.file import FileEdit
from remediate.mail import compose, nexthop
from remediate.records import record
from remediate.transport import FileState

if TYPE_CHECKING:
    from remediate.contract.host import StepContext as Context

# A heredoc start: <<[-] with an optional quoted delimiter, on a line that redirects into a file.
HEREDOC: Final = re.compile(r"<<(?P<dash>-?)\s*(?P<quote>['\"]?)(?P<delim>[A-Za-z_][A-Za-z0-9_]*)(?P=quote)")
TARGET: Final = re.compile(r">{1,2}\s*(?P<path>[^\s;&|<>]+)")
COMPOSE_NAME: Final = re.compile(r"(?:^|/)(?:docker-)?compose(?:\.[\w-]+)?\.ya?ml$")


@record(frozen=True)
class Heredoc:
    """One heredoc of the script: what it writes, and where its body sits (0-based line indexes, end excluded)."""

    target: str
    start: int
    end: int
    expands: bool  # an unquoted delimiter: the shell expands $... in the body when the script runs
    line: int  # 1-based line of the `cat > ... <<` command


def same_hop(a: str, b: str) -> bool:
    """a and b send mail to the same host and port (the protocol aside: it is what the fix changes)."""
    if a.strip() == b.strip():
        return True
    hop_a, hop_b = nexthop.parse(a.strip("'\"")), nexthop.parse(b.strip("'\""))
    return (hop_a is not None and hop_b is not None and hop_a.host.lower() == hop_b.host.lower()
            and (hop_a.port or 25) == (hop_b.port or 25))


def heredocs(lines: list[str]) -> list[Heredoc]:
    """Every heredoc that writes a file, in order."""
    found, i = [], 0
    while i < len(lines):
        match = HEREDOC.search(lines[i])
        if not match:
            i += 1
            continue
        target = TARGET.search(lines[i])
        strip = "\t" if match["dash"] else ""
        j = i + 1
        while j < len(lines) and lines[j].rstrip("\r\n").lstrip(strip) != match["delim"]:
            j += 1
        if target:
            found.append(Heredoc(target["path"].strip("'\""), i + 1, j, not match["quote"], i + 1))
        i = j + 1
    return found


@register
class UserDataRelay(FileEdit):
    """The relay edits of the compose file, made inside a provisioning script's compose heredocs."""

    kind = "user-data-relay"
    params = {
        "path": Param((str, type(None)), help="the user_data.sh (empty: nothing to do)"),
        "service": Param(str, default="postfix", help="the compose service inside the heredoc"),
        "relay_transport": Param(str, required=True,
                                 help="the next hop, e.g. {{ steps.relay-transport.relay_transport }}"),
        "relay_before": Param((str, type(None)),
                              help="the relay value the host had before the fix, which the script must describe, e.g. "
                                   "{{ steps.relay-transport.relay_before }}; empty: the relay_before of the earlier "
                                   "step whose relay_transport this is"),
        "remove_domains": Param(list, default=[]),
        "relayhost_key": Param(str, default="RELAYHOST"),
        "transport_key": Param(str, default="POSTFIX_relay_transport"),
        "domains_key": Param(str, default="POSTFIX_relay_domains"),
    }

    def plan(self, ctx: Context) -> Plan:
        if not self.p["path"]:
            return self.planned("iac_user_data is not set, so there is no IaC file to keep in step")
        return super().plan(ctx)

    def edit(self, ctx: Context, current: FileState | None) -> tuple[bytes | None, str]:
        if current is None:
            raise InputError(f"{ctx.target_name(self.target)}:{self.path} does not exist",
                             hint="set iac_user_data to the Terraform user_data.sh, or leave it empty")
        wanted = self.p["relay_transport"]
        text = current.content.decode("utf-8", "surrogateescape")
        lines = text.splitlines(keepends=True)
        found = heredocs(lines)
        self._refuse_unknown_targets(found, lines)
        docs = [h for h in found if COMPOSE_NAME.search(h.target)]
        if not docs:
            raise self._no_compose_heredoc(lines, ctx)
        before = self._host_relay(ctx)
        what: list[str] = []
        for doc in reversed(docs):  # from the end, so earlier line numbers stay right
            body = "".join(lines[doc.start:doc.end])
            new = self._edit_body(body, doc, wanted, before, what)
            lines[doc.start:doc.end] = new.splitlines(keepends=True)
        if not what:
            return None, f"{self.path} already agrees: {self.p['transport_key']}={wanted}"
        result = "".join(lines)
        self._shell_still_parses(result)
        return result.encode("utf-8", "surrogateescape"), "make it agree with the compose file: " + "; ".join(reversed(what))

    def _relay_lines(self, lines: list[str], start: int = 0, end: int | None = None) -> list[int]:
        """The 1-based numbers of the lines from start to end that name the relay (RELAYHOST or the transport key)."""
        keys = re.compile(rf"\b(?:{re.escape(self.p['relayhost_key'])}|{re.escape(self.p['transport_key'])})\b")
        return [i + 1 for i in range(start, len(lines) if end is None else end) if keys.search(lines[i])]

    def _refuse_unknown_targets(self, found: list[Heredoc], lines: list[str]) -> None:
        """A heredoc naming the relay that writes to a path only the running shell knows ($VAR) cannot be checked."""
        for doc in found:
            named = self._relay_lines(lines, doc.start, doc.end)
            if named and not COMPOSE_NAME.search(doc.target) and any(c in doc.target for c in "$`"):
                expands = " (and its delimiter is not quoted, so the shell expands its ${...} too)" if doc.expands else ""
                raise InputError(f"{self.path}:{doc.line}: this heredoc writes to {doc.target}, a path the shell knows "
                                 f"only when the script runs, and sets the relay (line {named[0]}){expands}; remediate "
                                 "cannot tell whether it writes the compose file, so it cannot check it",
                                 hint="write the compose file's path in the heredoc (cat > /opt/mail/docker-compose.yml "
                                      "<<'EOF'), or edit the script by hand and leave iac_user_data empty")

    def _no_compose_heredoc(self, lines: list[str], ctx: Context) -> InputError:
        """Why a script that writes no compose file in a heredoc cannot be kept in step (never "nothing to do")."""
        named = self._relay_lines(lines)
        if named:
            return InputError(f"{self.path}:{named[0]}: the relay is set outside a compose heredoc (a shell line, or a "
                              "heredoc that writes another file); remediate edits only the compose heredocs "
                              "(cat > .../docker-compose.yml <<'EOF'), so it cannot keep this script in step",
                              hint="edit it by hand, and leave iac_user_data empty")
        before = self._host_relay(ctx)
        return InputError(f"{self.path} writes no compose file in a heredoc and sets no {self.p['relayhost_key']} or "
                          f"{self.p['transport_key']}, so it does not describe this host's relay"
                          + (f" ({before or '(unset)'})" if before is not None else ""),
                          hint="set iac_user_data to the script that writes this host's compose file, or leave it empty")

    def _host_relay(self, ctx: Context) -> str | None:
        """The relay value the host had before the fix: relay_before, else the earlier plan that gave relay_transport."""
        if self.p["relay_before"] is not None:
            return str(self.p["relay_before"])
        for plan in reversed(ctx.plans):
            if plan.outputs.get("relay_transport") == self.p["relay_transport"] and "relay_before" in plan.outputs:
                return str(plan.outputs["relay_before"])
        return None

    def _edit_body(self, body: str, doc: Heredoc, wanted: str, before: str | None, what: list[str]) -> str:
        where = f"{self.path}:{doc.line} (heredoc writing {doc.target})"
        service, old_key, new_key, domains_key = (self.p["service"], self.p["relayhost_key"], self.p["transport_key"],
                                                  self.p["domains_key"])
        env = compose.service_env(body, service, where)
        touched = [k for k in (old_key, new_key, domains_key) if k in env]
        if doc.expands and any("$" in (env.get(k) or "") for k in touched):
            raise InputError(f"{where}: the heredoc's delimiter is not quoted, so the shell expands the $ in "
                             f"{', '.join(k for k in touched if '$' in (env.get(k) or ''))} when the script runs; "
                             "remediate cannot know that value", hint="quote the delimiter (<<'EOF') or edit it by hand")
        new = body
        if old_key in env or env.get(new_key) != wanted:
            self._describes_the_host(where, env, before, wanted)
            new = compose.edit_env(new, service, set_={new_key: wanted}, remove=(old_key,), rename=(old_key, new_key),
                                   name=where)
            was = f"{old_key}={env[old_key]}" if old_key in env else f"{new_key}={env[new_key]}"
            what.append(f"{was} becomes {new_key}={wanted} in the heredoc at line {doc.line}")
        domains = env.get(domains_key)
        if domains:
            pruned, gone = prune(domains, [str(d) for d in self.p["remove_domains"]])
            if gone and pruned:
                new = compose.edit_env(new, service, set_={domains_key: pruned}, name=where)
                what.append(f"{domains_key} drops {', '.join(gone)} in the heredoc at line {doc.line}")
        return new

    def _describes_the_host(self, where: str, env: compose.Env, before: str | None, wanted: str) -> None:
        """Refuse to rewrite a heredoc whose relay is not the one the host had: it describes another host."""
        old_key, new_key = self.p["relayhost_key"], self.p["transport_key"]
        key = old_key if old_key in env else new_key
        value = env.get(key)
        had = "unknown: no relay_before was given" if before is None else before or "(unset)"
        if value is None:
            raise InputError(f"{where}: the heredoc sets neither {old_key} nor {new_key} for service "
                             f"{self.p['service']!r} (the host had {had}); remediate cannot tell where it sets the "
                             "relay, so it cannot keep it in step", hint="edit it by hand, and leave iac_user_data empty")
        if "$" in value:
            raise InputError(f"{where}: the heredoc's {key}={value} is known only when compose reads it on the "
                             f"provisioned host, so remediate cannot tell whether it describes the host being fixed "
                             f"(which had {had})", hint="edit it by hand, and leave iac_user_data empty")
        if before is None or not same_hop(value, before):
            raise InputError(f"{where}: the heredoc's {key} is {value}, but the host being fixed had {had}: the script "
                             f"describes another host (a staging twin?); refusing to rewrite it to {new_key}={wanted}",
                             hint="point iac_user_data at this host's own user_data.sh"
                                  + (", or pass relay_before" if before is None else ""))

    def _shell_still_parses(self, text: str) -> None:
        bash = shutil.which("bash")
        if bash is None:
            return
        with tempfile.NamedTemporaryFile("w", suffix=".sh", encoding="utf-8", errors="surrogateescape") as copy:
            copy.write(text)
            copy.flush()
            done = subprocess.run([bash, "-n", copy.name], capture_output=True, text=True)
        if done.returncode != 0:
            raise InputError(f"{self.path}: refusing the edit: `bash -n` fails on the result: {done.stderr.strip()[-200:]}",
                             hint="edit it by hand")
