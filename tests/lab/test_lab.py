"""The lab reproduces the incident with real software: the bounce, the fix by hand, the volume trap."""

from __future__ import annotations

import re

from . import labctl


def test_broken_lab_bounces_with_the_incidents_error(broken_lab: None) -> None:
    tag = labctl.send_mail()
    line = labctl.status_of(tag)
    assert re.search(r"postfix/relay/smtp\[\d+\]: \w+: to=<test@kuma8088\.com>, relay=127\.0\.0\.11\[127\.0\.0\.11\]:2525, "
                     r"delay=[\d.]+, delays=[\d./]+, dsn=5\.5\.1, status=bounced \(host 127\.0\.0\.11\[127\.0\.0\.11\] "
                     r"refused to talk to me: 500 5\.5\.1 Unknown command\)$", line), line
    assert "saved mail" not in labctl.logs(labctl.DOVECOT)


def test_fix_by_hand_delivers_over_lmtp(broken_lab: None) -> None:
    text = labctl.COMPOSE_FILE.read_text()
    text = text.replace("RELAYHOST=[127.0.0.11]:2525", "POSTFIX_relay_transport=lmtp:[127.0.0.11]:2525")
    labctl.COMPOSE_FILE.write_text(text.replace("kuma8088.com, m8088.com", "kuma8088.com"))
    labctl.compose("down")
    labctl.compose("up", "-d")
    applied = labctl.wait_for(labctl.POSTFIX, "relay_transport")
    assert applied.endswith("\u2023 INFO  Applying custom postfix setting: relay_transport=lmtp:[127.0.0.11]:2525")
    tag = labctl.send_mail()
    line = labctl.status_of(tag)
    sent = re.search(r"postfix/lmtp\[\d+\]: \w+: to=<test@kuma8088\.com>, .*dsn=2\.0\.0, "
                     r"status=sent \(250 2\.0\.0 <test@kuma8088\.com> (\S+) Saved\)$", line)
    assert sent, line
    saved = labctl.wait_for(labctl.DOVECOT, f"msgid=<{tag}@lab.test>: saved mail to INBOX")
    session = re.escape(sent.group(1))
    assert re.search(rf"lmtp\(test@kuma8088\.com\)<\d+><{session}>: Info: msgid=<{tag}@lab\.test>: saved mail to INBOX$", saved), saved


def test_up_alone_keeps_a_removed_setting_down_and_up_drops_it(broken_lab: None) -> None:
    original = labctl.COMPOSE_FILE.read_text()
    with_setting = original.replace("RELAYHOST=[127.0.0.11]:2525", "POSTFIX_relay_transport=lmtp:[127.0.0.11]:2525")
    labctl.COMPOSE_FILE.write_text(with_setting)
    labctl.compose("down")
    labctl.compose("up", "-d")
    labctl.wait_for(labctl.POSTFIX, "Starting: postfix start-fg")
    assert labctl.postconf("relay_transport")["relay_transport"] == "lmtp:[127.0.0.11]:2525"

    labctl.COMPOSE_FILE.write_text(original)  # the line is gone, RELAYHOST is back
    before = labctl.container()
    labctl.compose("up", "-d")
    after = labctl.container()
    assert after.id != before.id, "up -d should re-create the container for the new environment"
    labctl.wait_for(labctl.POSTFIX, "Forwarding all emails to [127.0.0.11]:2525")
    assert labctl.postconf("relay_transport")["relay_transport"] == "lmtp:[127.0.0.11]:2525", \
        "the /etc/postfix volume should have kept the removed setting"

    labctl.compose("down")
    labctl.compose("up", "-d")
    labctl.wait_for(labctl.POSTFIX, "Starting: postfix start-fg")
    assert labctl.postconf("relay_transport")["relay_transport"] == "relay"


def test_reset_restores_the_broken_state_byte_for_byte(broken_lab: None) -> None:
    labctl.COMPOSE_FILE.write_text("# scribbled\n")
    labctl.send_mail()
    labctl.reset()
    assert labctl.COMPOSE_FILE.read_bytes() == labctl.PRISTINE_COMPOSE.read_bytes()
    assert "status=" not in labctl.logs(labctl.POSTFIX)
    assert "RELAYHOST=[127.0.0.11]:2525" in labctl.container().env
