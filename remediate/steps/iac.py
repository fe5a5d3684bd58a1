"""Make an infrastructure-as-code script (a Terraform user_data.sh) agree with the fixed compose file.

Only compose text is edited: each heredoc that writes a compose file (`cat > .../docker-compose.yml <<'EOF'`,
any delimiter) gets exactly the compose edit, applied to its body parsed as YAML. Shell lines outside a heredoc,
and heredocs that write anything else (a .env file among them), are never touched. Afterwards `bash -n` must
pass and every edited body must still parse.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from .. import compose
from ..errors import InputError
from ..plan import Plan
from ..transport import FileState
from . import Param, register
from .compose_env import prune
from .file import FileEdit

if TYPE_CHECKING:
    from ..context import Context

# A heredoc start: <<[-] with an optional quoted delimiter, on a line that redirects into a file.
HEREDOC: Final = re.compile(r"<<(?P<dash>-?)\s*(?P<quote>['\"]?)(?P<delim>[A-Za-z_][A-Za-z0-9_]*)(?P=quote)")
TARGET: Final = re.compile(r">{1,2}\s*(?P<path>[^\s;&|<>]+)")
COMPOSE_NAME: Final = re.compile(r"(?:^|/)(?:docker-)?compose(?:\.[\w-]+)?\.ya?ml$")


@dataclass(frozen=True)
class Heredoc:
    """One heredoc of the script: what it writes, and where its body sits (0-based line indexes, end excluded)."""

    target: str
    start: int
    end: int
    expands: bool  # an unquoted delimiter: the shell expands $... in the body when the script runs
    line: int  # 1-based line of the `cat > ... <<` command


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
        "remove_domains": Param(list, default=[]),
        "relayhost_key": Param(str, default="RELAYHOST"),
        "transport_key": Param(str, default="POSTFIX_relay_transport"),
        "domains_key": Param(str, default="POSTFIX_relay_domains"),
    }

    def check(self, ctx: Context) -> Plan:
        if not self.p["path"]:
            return self.plan("iac_user_data is not set, so there is no IaC file to keep in step")
        return super().check(ctx)

    def edit(self, ctx: Context, current: FileState | None) -> tuple[bytes | None, str]:
        if current is None:
            raise InputError(f"{ctx.target_name(self.target)}:{self.path} does not exist",
                             hint="set iac_user_data to the Terraform user_data.sh, or leave it empty")
        wanted = self.p["relay_transport"]
        text = current.content.decode("utf-8", "surrogateescape")
        lines = text.splitlines(keepends=True)
        docs = [h for h in heredocs(lines) if COMPOSE_NAME.search(h.target)]
        if not docs:
            return None, (f"{self.path} writes no compose file in a heredoc (cat > .../docker-compose.yml <<'EOF'); "
                          "nothing to keep in step, and shell lines are never edited")
        what: list[str] = []
        for doc in reversed(docs):  # from the end, so earlier line numbers stay right
            body = "".join(lines[doc.start:doc.end])
            new = self._edit_body(body, doc, wanted, what)
            lines[doc.start:doc.end] = new.splitlines(keepends=True)
        if not what:
            return None, f"{self.path} already agrees: {self.p['transport_key']}={wanted}"
        result = "".join(lines)
        self._shell_still_parses(result)
        return result.encode("utf-8", "surrogateescape"), "make it agree with the compose file: " + "; ".join(reversed(what))

    def _edit_body(self, body: str, doc: Heredoc, wanted: str, what: list[str]) -> str:
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
        if old_key in env or (new_key in env and env[new_key] != wanted):
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
