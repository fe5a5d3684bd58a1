#!/bin/bash
# services/mailserver/terraform/user_data.sh
# EC2 first-boot script for the MX gateway: installs Docker and writes the compose project.
set -euo pipefail

exec > >(tee /var/log/user-data.log | logger -t user-data -s 2>/dev/console) 2>&1

echo "=== MX gateway bootstrap ==="

# --- packages -----------------------------------------------------------------
dnf update -y
dnf install -y docker
systemctl enable --now docker

mkdir -p /usr/local/lib/docker/cli-plugins
curl -fsSL "https://github.com/docker/compose/releases/download/v2.29.7/docker-compose-linux-x86_64" \
  -o /usr/local/lib/docker/cli-plugins/docker-compose
chmod +x /usr/local/lib/docker/cli-plugins/docker-compose

# --- compose project ------------------------------------------------------------
mkdir -p /opt/mailserver
cat > /opt/mailserver/docker-compose.yml <<'COMPOSE'
version: "3.7"

services:
  postfix:
    image: boky/postfix:latest
    container_name: mailserver-postfix
    restart: unless-stopped
    ports:
      - "25:25"
    environment:
      - ALLOWED_SENDER_DOMAINS=kuma8088.com
      - POSTFIX_myhostname=mx.kuma8088.com
      - RELAYHOST=[127.0.0.11]:2525
      - POSTFIX_relay_domains=kuma8088.com, m8088.com
COMPOSE

cd /opt/mailserver
docker compose up -d

echo "=== MX gateway bootstrap done ==="
