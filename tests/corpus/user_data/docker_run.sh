#!/bin/bash
# A gateway started with docker run: its relay is a shell argument, not a compose file.
set -euo pipefail
docker run -d --name mailserver-postfix --restart unless-stopped -p 25:25 \
  -e ALLOWED_SENDER_DOMAINS=example.org \
  -e RELAYHOST=[10.0.0.5]:2525 \
  boky/postfix:latest
