"""Compose shapes written by us after real-world files: each with the outcome the relay edit must have.

edit: the files the edit changes, and what compose then resolves POSTFIX_relay_transport to (RELAYHOST gone).
noop: nothing to change. refuse: the words the refusal must say.
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


def svc(env: str, extra: str = "", image: str = "boky/postfix") -> str:
    return f"services:\n  postfix:\n    image: {image}\n{extra}    environment:\n{env}"


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
        "relay.env": "RELAYHOST=[10.0.0.5]:2525\n"}, "edit", changed=("relay.env",)),
    Shape("an image with its own entrypoint (OpenVAS)", {"docker-compose.yml": svc("      - RELAYHOST=mail.example:25\n",
                                                                                    image="greenbone/gvmd:stable")},
          "refuse", words=("greenbone/gvmd:stable", "not known to follow boky/postfix's environment contract",
                           "postfix_images")),
    Shape("an image built here (MISP)", {"docker-compose.yml": "services:\n  postfix:\n    build: .\n    environment:\n"
                                                               "      - RELAYHOST=mail.example\n"},
          "refuse", words=("(none: it is built here)", "postfix_images")),
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
]
