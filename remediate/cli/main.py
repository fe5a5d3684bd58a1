"""The remediate command line: the group (app.py) with its commands registered, and the entry point that turns a
usage error into exit 1. Parsing, one library call, rendering: nothing else lives in cli/."""

from __future__ import annotations

import sys

import click

from remediate.cli import run_commands
from remediate.cli.app import become_password, cli, complete_hosts, complete_playbooks, interactive, reports_errors
from remediate.cli.output import JsonRenderer
from remediate.errors import EXIT_ERROR

__all__ = ["become_password", "cli", "complete_hosts", "complete_playbooks", "interactive", "main", "run_commands"]

#: serve's commands (and their module, logging's) are loaded only when one of them is asked for or listed; so are
#: the commands that read runs, inventories and catalogues (inspect_commands.py).
SERVE_COMMANDS = ("serve", "incidents", "approve", "deny", "pause", "resume")
INSPECT_COMMANDS = ("runs", "validate", "inventory", "playbooks", "kinds", "checks")


def _register_inspect() -> None:
    from remediate.cli import inspect_commands  # noqa: F401 - its commands register themselves on cli


def _register_serve() -> None:
    from remediate.serve.commands import register
    register(cli, reports_errors)


def _register_rollouts() -> None:
    from remediate.cli import rollouts  # noqa: F401 - its group registers itself on cli


cli.later(SERVE_COMMANDS, _register_serve)
cli.later(("rollouts",), _register_rollouts)
cli.later(INSPECT_COMMANDS, _register_inspect)


def main() -> None:
    """Entry point: usage errors exit 1, so that 2 always means 'changes pending'."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted; nothing was changed", err=True)
        sys.exit(EXIT_ERROR)
    except click.ClickException as e:
        if "--json" in sys.argv[1:]:
            JsonRenderer().error(f"usage: {e.format_message()}", EXIT_ERROR)
        else:
            e.show()
        sys.exit(EXIT_ERROR)
    sys.exit(0)
