"""diagnose as a library call: read-only checks on each host over the checks of one or more playbooks, and the
playbook that fixes each finding."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING

from remediate.engine.context import TransportPool
from remediate.engine.options import Options, refuse_unused
from remediate.errors import EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, InputError, RemediateError
from remediate.inputs import inventory as inventory_mod
from remediate.inputs import playbook as playbook_mod
from remediate.inputs import search_path
from remediate.inputs.inventory import Host
from remediate.kinds import HOST, LOCAL
from remediate.records import record
from remediate.transport import Transport

if TYPE_CHECKING:  # diagnose (its checks and probes) is imported by `diagnose` alone: apply should not pay for it
    from remediate.diagnostics import diagnose as diagnose_mod


@record
class Diagnosis:
    """What diagnose found on one host, over the checks of one or more playbooks."""

    host: str
    checks: list[diagnose_mod.Check]
    signatures: list[diagnose_mod.Signature]
    probes: list[diagnose_mod.Probe]
    error: str | None = None
    playbooks: tuple[str, ...] = ()
    #: For each fix a check names (as `-p` takes it), the variables that playbook reads: the next command repeats
    #: only what it may take.
    fix_vars: dict[str, frozenset[str]] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        if self.error:
            return EXIT_ERROR
        return EXIT_FINDINGS if any(c.ok is False for c in self.checks) else EXIT_OK


def diagnosed_playbooks(name: str | None) -> list[playbook_mod.Playbook]:
    """The playbook -p names (it must declare diagnose: checks), or every playbook on the search path that does."""
    if name:
        book = playbook_mod.load(playbook_mod.locate(name))
        if not book.diagnose:
            raise InputError(f"{book.path} declares no diagnose: checks",
                             hint="run remediate diagnose without -p to use the checks of every playbook on the search "
                                  f"path ({playbook_mod.describe_search_path()})")
        return [book]
    refused = search_path.refused()
    if refused:  # a package's playbook that cannot be used: never silently left out of the checks
        raise refused[0]
    return [b for b in (playbook_mod.load(listed.path) for listed in playbook_mod.catalog()) if b.diagnose]


def diagnose(opts: Options, factory: Callable[[Host], Transport]) -> list[Diagnosis]:
    """Read-only checks on each host; never writes anywhere. With -p, that playbook's diagnose: checks; without,
    those of every playbook on the search path that declares some (each finding names the playbook that fixes it,
    as `-p` finds it from here)."""
    from remediate.diagnostics import diagnose as diagnose_mod
    inventory = inventory_mod.load(opts.inventory)
    hosts = inventory.select(opts.hosts)
    extra = playbook_mod.parse_extra(opts.extra)
    books = diagnosed_playbooks(opts.playbook)
    fixes = {book.path: book.fix_arguments() for book in books}  # every fix: found before any connection
    fix_vars = _fix_vars(books)
    if opts.refuse_unused_vars:
        refuse_unused(extra, books, hosts)
    bound = {host.name: [(book, book.checks(host, extra, fixes[book.path])) for book in books] for host in hosts}
    pool = TransportPool(inventory, factory)
    results = []
    try:
        for host in hosts:
            found = Diagnosis(host.name, [], [], [], playbooks=tuple(b.name for b in books), fix_vars=fix_vars)
            try:
                for _, checks in bound[host.name]:
                    part = diagnose_mod.run(checks, pool.get(HOST, host), pool.get(LOCAL, host))
                    found.checks += part.checks
                    found.signatures += part.signatures
                    found.probes += part.probes
            except RemediateError as e:
                found.error = str(e)
            results.append(found)
    finally:
        pool.close()
    return results


def _fix_vars(books: list[playbook_mod.Playbook]) -> dict[str, frozenset[str]]:
    """For each playbook a check's fix: names (by its -p argument), the variables it reads; each loaded once."""
    by_path: dict[str, frozenset[str]] = {}
    out = {}
    for book in books:
        for path in book.fixes().values():
            key = str(path.resolve())
            if key not in by_path:
                by_path[key] = playbook_mod.load(path).names_used() | playbook_mod.READ_BY_REMEDIATE
            out[playbook_mod.argument(path)] = by_path[key]
    return out


def next_options(result: Diagnosis, inventory: Path | None, extra: tuple[str, ...], allow_unused: bool) -> str:
    """The options diagnose's suggested `remediate plan` repeats: -i, and the -e given, quoted for a shell; with
    --allow-unused-vars when a fix playbook does not read one of them (it would refuse it otherwise)."""
    given = playbook_mod.parse_extra(extra)
    fixes = {c.fix for c in result.checks if c.fix and c.ok is False}
    unused = any(name not in result.fix_vars.get(fix, frozenset(given)) for fix in fixes for name in given)
    parts = [f"-i {shlex.quote(str(inventory))}"] if inventory else []
    parts += [f"-e {shlex.quote(e)}" for e in extra]
    if unused or (allow_unused and extra):
        parts.append("--allow-unused-vars")
    return " ".join(parts)


