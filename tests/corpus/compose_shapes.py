"""Compose shapes written by us after real-world files: each with the outcome the relay edit must have.

edit: the files the edit changes, and what compose then resolves POSTFIX_relay_transport to (RELAYHOST gone, or
empty where the service's environment: overrides a shared env_file). noop: nothing to change. refuse: the words the
refusal must say. File names are relative to the project folder (/srv/mail in the unit tests): ../ reaches a folder
beside it, as a stack's shared env_file does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

GOOD = "lmtp:[10.0.0.5]:2525"


@dataclass(frozen=True)
class Shape:
    name: str
    files: dict[str, str]  # relative to the project folder; docker-compose.yml always
    outcome: str  # edit, noop, refuse
    resolved: str = GOOD  # edit: what compose resolves POSTFIX_relay_transport to afterwards
    changed: tuple[str, ...] = ("docker-compose.yml",)
    words: tuple[str, ...] = ()  # refuse: in the message; edit: in the plan's reason
    exact: dict[str, str] = field(default_factory=dict)  # edit: files whose new text is known to the byte
    params: dict[str, object] = field(default_factory=dict)  # the step's parameters besides path and service
    relayhost: str | None = None  # edit: what compose resolves RELAYHOST to afterwards (None: unset)
    v2_only: bool = False  # compose v1 cannot read it (the lab test then reads it with compose v2)


def svc(env: str, extra: str = "", image: str = "boky/postfix") -> str:
    return f"services:\n  postfix:\n    image: {image}\n{extra}    environment:\n{env}"


# Shapes after files seen in the wild (issue #25), written for this corpus.

# An outbound relay whose image, registry and tag are all overridable from .env, with defaults.
RELAY_STACK = """\
# Outbound SMTP relay for the application stack.
# Pin a mirror or a tag in .env (POSTFIX_IMAGE, POSTFIX_IMAGE_TAG); the defaults follow upstream.
services:
  postfix:
    image: ${POSTFIX_IMAGE:-docker.io/boky/postfix}:${POSTFIX_IMAGE_TAG:-latest-alpine}
    restart: unless-stopped
    hostname: ${SMTP_HOSTNAME:-smtp.internal}
    environment:
      ALLOWED_SENDER_DOMAINS: ${MAIL_DOMAIN:-example.org}
      RELAYHOST: "[10.0.0.5]:2525"
    healthcheck:
      test: ["CMD", "sh", "-c", "printf 'QUIT\\\\r\\\\n' | nc -w 2 127.0.0.1 587"]
      interval: 30s
"""

# A stack where the whole image reference, tag included, is one variable with a default.
ONE_VARIABLE = """\
services:
  postfix:
    image: ${POSTFIX_IMAGE:-boky/postfix:latest}
    container_name: ${COMPOSE_PROJECT_NAME:-mail}-postfix
    environment:
      - ALLOWED_SENDER_DOMAINS=example.org
      - RELAYHOST=[10.0.0.5]:2525
"""

# A suite whose images are built from an organisation, a prefix and a version (as mail suites publish theirs).
SUITE = """\
# Mail suite: every image is ${DOCKER_ORG}/${DOCKER_PREFIX}<name>:${SUITE_VERSION}
x-image: &defaults
  restart: always
  logging:
    driver: journald

services:
  front:
    <<: *defaults
    image: ${DOCKER_ORG:-ghcr.io/mailu}/${DOCKER_PREFIX:-}nginx:${SUITE_VERSION:-2024.06}
  postfix:
    <<: *defaults
    image: ${DOCKER_ORG:-ghcr.io/mailu}/${DOCKER_PREFIX:-}postfix:${SUITE_VERSION:-2024.06}
    environment:
      - RELAYHOST=[10.0.0.5]:2525
      - MESSAGE_SIZE_LIMIT=50000000
"""

# The relay's runtime settings live in a file named by a variable the project's .env sets.
RUNTIME_ENV_FILE = """\
services:
  postfix:
    image: boky/postfix:v4.3.0
    env_file:
      - "${SMTP_RELAY_RUNTIME_ENV_FILE}"
    environment:
      - ALLOWED_SENDER_DOMAINS=${MAIL_DOMAIN}
"""

# Every stack on the host pulls in ../_shared/.env (time zone, domain, the relay) before its own settings.
SHARED_STACK = """\
# mail stack: settings common to every stack come from ../_shared/.env
services:
  postfix:
    image: boky/postfix
    restart: unless-stopped
    env_file:
      - ../_shared/.env
      - ./mail.env
    ports:
      - "127.0.0.1:25:587"
"""
SHARED_ENV = "# shared by every stack on this host\nTZ=Europe/Berlin\nMAIL_DOMAIN=example.org\nRELAYHOST=[10.0.0.5]:2525\n"
MAIL_ENV = "ALLOWED_SENDER_DOMAINS=example.org\nPOSTFIX_message_size_limit=52428800\n"

# The service is built from the repository's root (a monorepo's deploy/compose/ folder), not pulled.
BUILT = """\
services:
  postfix:
    build:
      context: ../..
      dockerfile: docker/postfix/Dockerfile
    environment:
      - ALLOWED_SENDER_DOMAINS=example.org
      - RELAYHOST=[10.0.0.5]:2525
"""

# A Compose Specification file: a top-level name:, a secret read from the environment, healthcheck.start_interval.
SPEC_ONLY = """\
name: mail-edge

services:
  postfix:
    image: boky/postfix:v4.3.0
    secrets:
      - sasl_password
    environment:
      - ALLOWED_SENDER_DOMAINS=example.org
      - RELAYHOST=[10.0.0.5]:2525
      - RELAYHOST_PASSWORD_FILE=/run/secrets/sasl_password
    healthcheck:
      test: ["CMD", "postfix", "status"]
      start_period: 30s
      start_interval: 2s

secrets:
  sasl_password:
    environment: SASL_PASSWORD
"""


SHAPES = [
    Shape("list, bare", {"docker-compose.yml": svc("      - A=1\n      - RELAYHOST=[10.0.0.5]:2525\n")}, "edit",
          exact={"docker-compose.yml": svc("      - A=1\n      - POSTFIX_relay_transport=lmtp:[10.0.0.5]:2525\n")}),
    Shape("list, double-quoted entry, comment", {"docker-compose.yml": svc('      - "RELAYHOST=[10.0.0.5]:2525"  # smtp\n')},
          "edit", exact={"docker-compose.yml": svc('      - "POSTFIX_relay_transport=lmtp:[10.0.0.5]:2525"  # smtp\n')}),
    Shape("list, single-quoted entry", {"docker-compose.yml": svc("      - 'RELAYHOST=[10.0.0.5]:2525'\n")}, "edit"),
    Shape("mapping, bare host", {"docker-compose.yml": svc("      RELAYHOST: 10.0.0.5\n      B: x\n")}, "edit",
          exact={"docker-compose.yml": svc("      POSTFIX_relay_transport: lmtp:[10.0.0.5]:2525\n      B: x\n")}),
    Shape("mapping, quoted value", {"docker-compose.yml": svc('      RELAYHOST: "[10.0.0.5]:2525"\n')}, "edit"),
    Shape("comments and blank lines", {"docker-compose.yml": svc(
        "      # senders\n      - ALLOWED_SENDER_DOMAINS=example.com\n\n      # relay\n      - RELAYHOST=[10.0.0.5]:2525\n\n")},
        "edit"),
    Shape("CRLF", {"docker-compose.yml": "services:\r\n  postfix:\r\n    image: boky/postfix\r\n    environment:\r\n"
                                         "      - RELAYHOST=[10.0.0.5]:2525\r\n      - B=2\r\n"}, "edit",
          exact={"docker-compose.yml": "services:\r\n  postfix:\r\n    image: boky/postfix\r\n    environment:\r\n"
                                       "      - POSTFIX_relay_transport=lmtp:[10.0.0.5]:2525\r\n      - B=2\r\n"}),
    Shape("several services, only postfix edited", {"docker-compose.yml": svc("      - RELAYHOST=[10.0.0.5]:2525\n")
          + "  web:\n    image: nginx\n    environment:\n      - RELAYHOST=keep.example\n"}, "edit"),
    Shape("version key and x- anchors elsewhere", {"docker-compose.yml": 'version: "3.7"\nx-log: &log\n  driver: json-file\n'
          + svc("      - RELAYHOST=[10.0.0.5]:2525\n", "    logging: *log\n")}, "edit"),
    Shape("already fixed", {"docker-compose.yml": svc("      - POSTFIX_relay_transport=lmtp:[10.0.0.5]:2525\n")}, "noop"),
    Shape("$VAR from .env", {"docker-compose.yml": svc("      - RELAYHOST=$RELAYHOST\n"),
                             ".env": "RELAYHOST=[10.0.0.5]:2525\n"}, "edit",
          words=("compose reads '[10.0.0.5]:2525'", "interpolated from /srv/mail/.env:1 (RELAYHOST)")),
    Shape("${VAR} from .env, mapping form", {"docker-compose.yml": svc("      RELAYHOST: ${RELAYHOST}\n"),
                                            ".env": "# relay\nexport RELAYHOST=\"[10.0.0.5]:2525\"\n"}, "edit"),
    Shape("[${HOST}]:${PORT}", {"docker-compose.yml": svc("      - RELAYHOST=[${HOST}]:${PORT}\n"),
                                ".env": "HOST=10.0.0.5\nPORT=25\n"}, "edit"),
    Shape("${HOST}:${PORT}", {"docker-compose.yml": svc("      - RELAYHOST=${HOST}:${PORT}\n"),
                              ".env": "HOST=10.0.0.5\nPORT=587\n"}, "edit"),
    Shape("${X:-default}", {"docker-compose.yml": svc("      - RELAYHOST=${X:-[10.0.0.7]:25}\n")}, "edit",
          resolved="lmtp:[10.0.0.7]:2525"),
    Shape("${X:?message} unset", {"docker-compose.yml": svc("      - RELAYHOST=${X:?set X}\n")}, "refuse",
          words=("cannot be resolved", "X is unset")),
    Shape("unset $VAR", {"docker-compose.yml": svc("      - RELAYHOST=$NOPE\n")}, "refuse", words=("resolves to ''",)),
    Shape("literal quotes kept by compose", {"docker-compose.yml": svc('      - RELAYHOST="relay.example.net"\n')}, "edit",
          resolved="lmtp:[relay.example.net]:2525", words=("probably broken too",)),
    Shape("IPv6", {"docker-compose.yml": svc("      - RELAYHOST=[2001:db8::1]:587\n")}, "edit",
          resolved="lmtp:[2001:db8::1]:2525"),
    Shape("registry and tag on the image", {"docker-compose.yml": svc("      - RELAYHOST=[10.0.0.5]:2525\n",
                                                                       image="registry.example.com:5000/boky/postfix:v4")},
          "edit"),
    Shape("env_file only", {"docker-compose.yml": "services:\n  postfix:\n    image: boky/postfix\n    env_file: relay.env\n",
                            "relay.env": "# relay\nRELAYHOST=[10.0.0.5]:2525\nA=1\n"}, "edit", changed=("relay.env",),
          exact={"relay.env": "# relay\nPOSTFIX_relay_transport=lmtp:[10.0.0.5]:2525\nA=1\n"}),
    Shape("env_file with an environment list beside it", {
        "docker-compose.yml": svc("      - A=1\n", "    env_file: [relay.env]\n"),
        "relay.env": "RELAYHOST=[10.0.0.5]:2525\n"}, "edit", changed=("relay.env",)),
    Shape("in both env_file and environment", {
        "docker-compose.yml": svc("      - RELAYHOST=[10.0.0.5]:2525\n", "    env_file: relay.env\n"),
        "relay.env": "RELAYHOST=[10.9.9.9]:25\nB=2\n"}, "edit", changed=("docker-compose.yml", "relay.env"),
        exact={"relay.env": "B=2\n"}),
    Shape("two env_files, the last wins", {
        "docker-compose.yml": "services:\n  postfix:\n    image: boky/postfix\n    env_file:\n      - base.env\n      - relay.env\n",
        "base.env": "RELAYHOST=[10.9.9.9]:25\n", "relay.env": "RELAYHOST=[10.0.0.5]:2525\n"}, "edit",
        changed=("base.env", "relay.env")),
    Shape("env_file in path: form", {
        "docker-compose.yml": "services:\n  postfix:\n    image: boky/postfix\n    env_file:\n      - path: relay.env\n",
        "relay.env": "RELAYHOST=[10.0.0.5]:2525\n"}, "edit", changed=("relay.env",), v2_only=True),
    Shape("an image with its own entrypoint (OpenVAS)", {"docker-compose.yml": svc("      - RELAYHOST=mail.example:25\n",
                                                                                    image="greenbone/gvmd:stable")},
          "refuse", words=("greenbone/gvmd:stable", "not known to follow boky/postfix's environment contract",
                           "postfix_images")),
    Shape("an image built here (MISP)", {"docker-compose.yml": "services:\n  postfix:\n    build: .\n    environment:\n"
                                                               "      - RELAYHOST=mail.example\n"},
          "refuse", words=("an image built here (build: and no image:; compose names it mail-postfix, v1 mail_postfix)",
                           "-e 'postfix_images=[mail-postfix, mail_postfix]'")),
    Shape("no RELAYHOST anywhere", {"docker-compose.yml": svc("      - A=1\n")}, "refuse",
          words=("no RELAYHOST or POSTFIX_relay_transport", "lmtp_host")),
    Shape("a shell script given as the compose file", {"docker-compose.yml": "#!/bin/bash\nRELAYHOST=x\n"}, "refuse",
          words=("shell script", "user-data-relay")),
    Shape("environment from a shared merge key", {"docker-compose.yml": "x-env: &env\n  RELAYHOST: \"[10.0.0.5]:2525\"\n"
                                                  + svc("      <<: *env\n      B: x\n")}, "refuse", words=("merge key",)),
    Shape("environment list shared through an alias", {"docker-compose.yml": "x-env: &env\n  - RELAYHOST=[10.0.0.5]:2525\n"
                                                       "services:\n  postfix:\n    image: boky/postfix\n"
                                                       "    environment: *env\n  other:\n    image: boky/postfix\n"
                                                       "    environment: *env\n"}, "refuse",
          words=("would change more than the environment",)),
    # Compose as compose reads it (issue #25): the image and env_file paths are interpolated too.
    Shape("image from variables with registry and tag defaults", {"docker-compose.yml": RELAY_STACK}, "edit"),
    Shape("image from variables, .env pins a mirror", {"docker-compose.yml": RELAY_STACK,
                                                       ".env": "POSTFIX_IMAGE=registry.example.com:5000/boky/postfix\n"
                                                               "POSTFIX_IMAGE_TAG=v4.3.0\n"}, "edit"),
    Shape("image and tag in one variable's default", {"docker-compose.yml": ONE_VARIABLE}, "edit"),
    Shape("image from .env names another image", {"docker-compose.yml": ONE_VARIABLE,
                                                   ".env": "COMPOSE_PROJECT_NAME=mail\nPOSTFIX_IMAGE=example/exim4:4.97\n"},
          "refuse", words=("runs image example/exim4:4.97 (image: ${POSTFIX_IMAGE:-boky/postfix:latest}, resolved from "
                           "/srv/mail/.env:2 (POSTFIX_IMAGE))", "-e 'postfix_images=[example/exim4]'")),
    Shape("image that must be set, unset", {"docker-compose.yml": ONE_VARIABLE.replace(
        "${POSTFIX_IMAGE:-boky/postfix:latest}", "${POSTFIX_IMAGE:?set POSTFIX_IMAGE in .env}")}, "refuse",
        words=("the image of service 'postfix' (image: ${POSTFIX_IMAGE:?set POSTFIX_IMAGE in .env}) cannot be resolved",
               "POSTFIX_IMAGE is unset")),
    Shape("suite image, not vouched for", {"docker-compose.yml": SUITE}, "refuse",
          words=("runs image ghcr.io/mailu/postfix:2024.06 (image: ${DOCKER_ORG:-ghcr.io/mailu}/${DOCKER_PREFIX:-}"
                 "postfix:${SUITE_VERSION:-2024.06}, resolved from defaults only", "-e 'postfix_images=[mailu/postfix]'")),
    Shape("suite image, vouched for with postfix_images", {"docker-compose.yml": SUITE}, "edit",
          params={"postfix_images": ["mailu/postfix"]}),
    Shape("env_file path from .env", {"docker-compose.yml": RUNTIME_ENV_FILE,
                                      ".env": "MAIL_DOMAIN=example.org\n"
                                              "SMTP_RELAY_RUNTIME_ENV_FILE=./runtime/smtp-relay.env\n",
                                      "runtime/smtp-relay.env": "RELAYHOST=[10.0.0.5]:2525\n"}, "edit",
          changed=("runtime/smtp-relay.env",)),
    Shape("env_file path from a default", {"docker-compose.yml": RUNTIME_ENV_FILE.replace(
        "${SMTP_RELAY_RUNTIME_ENV_FILE}", "${SMTP_RELAY_RUNTIME_ENV_FILE:-relay.env}"),
        "relay.env": "RELAYHOST=[10.0.0.5]:2525\n"}, "edit", changed=("relay.env",)),
    Shape("env_file path from .env, file missing", {"docker-compose.yml": RUNTIME_ENV_FILE,
                                                    ".env": "SMTP_RELAY_RUNTIME_ENV_FILE=./runtime/smtp-relay.env\n"},
          "refuse", words=("env_file ${SMTP_RELAY_RUNTIME_ENV_FILE} of service 'postfix' does not exist "
                           "(/srv/mail/runtime/smtp-relay.env; ${SMTP_RELAY_RUNTIME_ENV_FILE} resolves to "
                           "./runtime/smtp-relay.env from /srv/mail/.env:1 (SMTP_RELAY_RUNTIME_ENV_FILE))",)),
    Shape("env_file path that must be set, unset", {"docker-compose.yml": RUNTIME_ENV_FILE.replace(
        "${SMTP_RELAY_RUNTIME_ENV_FILE}", "${SMTP_RELAY_RUNTIME_ENV_FILE:?which runtime env file}")}, "refuse",
        words=("env_file ${SMTP_RELAY_RUNTIME_ENV_FILE:?which runtime env file} of service 'postfix' cannot be resolved "
               "as compose would: SMTP_RELAY_RUNTIME_ENV_FILE is unset",)),
    Shape("optional env_file missing (required: false)", {"docker-compose.yml": "services:\n  postfix:\n"
                                                          "    image: boky/postfix\n    env_file:\n"
                                                          "      - path: ./override.env\n        required: false\n"
                                                          "      - path: ./relay.env\n",
                                                          "relay.env": "RELAYHOST=[10.0.0.5]:2525\n"}, "edit",
          changed=("relay.env",), v2_only=True),
    # A shared env_file (../_shared/.env, read by every stack) is never changed without the plan saying so.
    Shape("shared env_file, refused by default", {"docker-compose.yml": SHARED_STACK, "../_shared/.env": SHARED_ENV,
                                                  "mail.env": MAIL_ENV}, "refuse",
          words=("/srv/_shared/.env: this env_file of service 'postfix' is outside its project folder /srv/mail, so "
                 "other stacks may read it", "-e shared_env_file=override", "RELAYHOST= (empty: boky/postfix then sets "
                 "no relayhost)", "-e shared_env_file=edit")),
    Shape("shared env_file, overridden in environment:", {"docker-compose.yml": SHARED_STACK,
                                                          "../_shared/.env": SHARED_ENV, "mail.env": MAIL_ENV}, "edit",
          params={"shared_env_file": "override"}, relayhost="",
          words=("/srv/_shared/.env is outside the project folder /srv/mail and left alone",),
          exact={"docker-compose.yml": SHARED_STACK.replace(
              '      - "127.0.0.1:25:587"\n', '      - "127.0.0.1:25:587"\n    environment:\n      - RELAYHOST=\n'
                                            "      - POSTFIX_relay_transport=lmtp:[10.0.0.5]:2525\n")}),
    Shape("shared env_file, overridden beside an environment list", {
        "docker-compose.yml": svc("      - ALLOWED_SENDER_DOMAINS=example.org\n", "    env_file: ../_shared/.env\n"),
        "../_shared/.env": SHARED_ENV}, "edit", params={"shared_env_file": "override"}, relayhost=""),
    Shape("shared env_file, edited when asked", {"docker-compose.yml": SHARED_STACK, "../_shared/.env": SHARED_ENV,
                                                 "mail.env": MAIL_ENV}, "edit", params={"shared_env_file": "edit"},
          changed=("../_shared/.env",),
          words=("/srv/_shared/.env is outside the project folder /srv/mail: every stack that reads it changes too",)),
    Shape("absolute env_file elsewhere", {"docker-compose.yml": "services:\n  postfix:\n    image: boky/postfix\n"
                                                                "    env_file: /etc/mail/relay.env\n    environment:\n"
                                                                "      - A=1\n",
                                          "../../etc/mail/relay.env": "RELAYHOST=[10.0.0.5]:2525\n"}, "refuse",
          words=("/etc/mail/relay.env: this env_file of service 'postfix' is outside its project folder",)),
    # A service built here has no image to list; compose names it <project>-<service> (v1: <project>_<service>).
    Shape("built from the repository root", {"docker-compose.yml": BUILT}, "refuse",
          words=("an image built here (build: and no image:; compose names it mail-postfix, v1 mail_postfix)",
                 "-e 'postfix_images=[mail-postfix, mail_postfix]'")),
    Shape("built, project named in .env", {"docker-compose.yml": BUILT, ".env": "COMPOSE_PROJECT_NAME=edge-relay\n"},
          "refuse", words=("-e 'postfix_images=[edge-relay-postfix, edge-relay_postfix]'",)),
    Shape("built, vouched for by its compose name", {"docker-compose.yml": BUILT}, "edit",
          params={"postfix_images": ["mail-postfix"]}),
    Shape("Compose Specification only (name:, secrets.environment, start_interval)",
          {"docker-compose.yml": SPEC_ONLY}, "edit", v2_only=True),
]
