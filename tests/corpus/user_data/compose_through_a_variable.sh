#!/bin/bash
# EC2 user data for the MX gateway, rendered by Terraform's templatefile() for every environment.
set -euo pipefail

DOCKER_COMPOSE_DIR=/opt/mailserver
DOCKER_COMPOSE_CONF=$DOCKER_COMPOSE_DIR/docker-compose.yml
RELAYHOST="${relayhost}"   # Terraform fills this in

mkdir -p "$DOCKER_COMPOSE_DIR"

cat << EOF > $DOCKER_COMPOSE_CONF
services:
  postfix:
    image: boky/postfix
    restart: always
    ports:
      - "25:25"
    environment:
      ALLOWED_SENDER_DOMAINS: example.org
      RELAYHOST: ${RELAYHOST}
EOF

cd "$DOCKER_COMPOSE_DIR" && docker compose up -d
