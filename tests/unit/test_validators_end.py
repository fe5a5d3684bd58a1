"""Every name remediate validates with a pattern ends where the value ends: Python's `$` also matches before a
trailing newline, so `.match` let "mx\n" through as a container name (and "alice\n" as a second person beside alice,
"ops\n" as a label of a host name)."""

from __future__ import annotations

import re

import pytest

from remediate.contract import validate
from remediate.errors import InputError
from remediate.inputs import playbook_yaml
from remediate.kinds import smtp_check
from remediate.probes import docker
from remediate.serve import commands, identity, launch, rules

PATTERNS = [(docker.CONTAINER_NAME, "mailserver-postfix"), (smtp_check.HELO, "remediate.check"),
            (launch.HEADER_NAME, "X-Remote-User"), (rules.ENV_NAME, "SLACK_WEBHOOK"), (rules.DURATION, "5m"),
            (commands.CHAT_ID, "U024BE7LH"), (identity.NAME, "alice"), (validate.LABEL, "ops"),
            (playbook_yaml.STEP_ID, "relay-transport")]


@pytest.mark.parametrize("pattern, good", PATTERNS, ids=[good for _, good in PATTERNS])
def test_a_value_with_a_trailing_newline_is_not_a_name(pattern: re.Pattern[str], good: str) -> None:
    assert pattern.match(good)
    assert not pattern.match(good + "\n") and not pattern.match(good + "\r\n")


def test_a_container_name_or_host_with_a_trailing_newline_is_refused_with_where_it_came_from() -> None:
    with pytest.raises(InputError, match="book.yml:3: container"):
        docker.container_name("mx\n", "book.yml:3: container")
    with pytest.raises(InputError):
        validate.host("mail.example.com\n", "inventory.yml:4: ansible_host")
