#!/bin/bash
# terraform/environments/staging/user_data.sh: the staging MX gateway.
# Staging's mailbox host listens for LMTP on 3525 (production: 2525).
set -euo pipefail

mkdir -p /opt/mailserver
cat > /opt/mailserver/docker-compose.yml <<'COMPOSE'
services:
  postfix:
    image: boky/postfix:latest
    container_name: mailserver-postfix
    restart: unless-stopped
    environment:
      - ALLOWED_SENDER_DOMAINS=example.org
      - POSTFIX_myhostname=mx.staging.example.org
      - RELAYHOST=[10.0.0.5]:3525
      - POSTFIX_relay_domains=example.org, old.example.org
COMPOSE

cd /opt/mailserver && docker compose up -d
