"""The images a compose project's `up -d` runs, bound by ID: every service it starts, by the name compose resolves
(or builds under) and the ID that name has on the host; and the images the project's containers run now. `down` and
`up -d` act on the whole project, so every service's image is bound, not only the one a step names."""

from __future__ import annotations

from typing import Final

from remediate.errors import StepError
from remediate.mail import compose, resolve
from remediate.probes.docker import refused
from remediate.transport import Transport

#: The pull_policy values under which `up -d` runs the image the host has (compose's default is missing).
KEPT_POLICIES: Final = ("missing", "if_not_present", "never")
PROJECT_LABEL: Final = "com.docker.compose.project"
#: Containers of `compose run` (one-off) are not the services' own: their image says nothing of what `up` replaces.
SERVICES_ONLY: Final = "label=com.docker.compose.oneoff=False"
SERVICE_FORMAT: Final = '{{index .Config.Labels "com.docker.compose.service"}} {{.Image}}'
#: How docker (and podman's docker) say that an image name names nothing.
MISSING: Final = ("no such image", "image not known")

Images = dict[str, list[str]]  # service -> [image name, image ID]
Running = dict[str, list[str]]  # service -> the image IDs its containers run (one per replica, each once)


def image_id(transport: Transport, image: str) -> str | None:
    """The ID (sha256:...) of the image a name or ID names on the host now; None when the host has no such image. A
    docker that cannot answer (not running, not allowed) is an error, never "no such image"."""
    result = transport.run(["docker", "image", "inspect", "--format", "{{.Id}}", "--", image])
    if result.ok and result.stdout.strip():
        return result.stdout.strip()
    if any(m in result.output.lower() for m in MISSING):
        return None
    refused(transport, f"docker image inspect {image}", result.output)
    raise StepError(f"{transport.name}: `docker image inspect {image}` failed: {result.output.strip()[-300:] or 'no output'}",
                    hint="check that docker runs there and that remediate's user (or become) may use it")


def short_id(image_id: str) -> str:
    """An image ID as docker shows it: its first 12 hex digits."""
    return image_id.removeprefix("sha256:")[:12]


def started(env: resolve.ServiceEnv) -> list[str]:
    """The services `up -d` starts in env's project: those without profiles:, those whose profiles .env's
    COMPOSE_PROFILES names (`*`: every one), and env's own service."""
    services = compose.parse(env.compose_text, env.compose_path).get("services") or {}
    active = {p.strip() for p in env.dotenv.get("COMPOSE_PROFILES", "").split(",") if p.strip()}
    return [str(name) for name, node in services.items() if name == env.service or not isinstance(node, dict)
            or not node.get("profiles") or "*" in active or active & {str(p) for p in node["profiles"]}]


def targets(transport: Transport, env: resolve.ServiceEnv, *, v2: bool) -> Images:
    """service -> [name, ID] of the image `up -d` will run, for every service it starts; StepError (nothing
    changed) when one cannot be bound."""
    found: Images = {}
    ids: dict[str, str | None] = {}  # services that share an image: asked once
    for service in started(env):  # another service's image alone: its environment is not this step's to read
        other = env if service == env.service else resolve.sibling(env, service)
        found[service] = list(target(transport, other, v2=v2, ids=ids))
    return found


def target(transport: Transport, env: resolve.ServiceEnv, *, v2: bool,
           ids: dict[str, str | None] | None = None) -> tuple[str, str]:
    """The image `up -d` will run for env's service, by name (as compose resolves `${IMAGE:-boky/postfix}:${TAG}`, or
    the name compose builds a service without image: under) and the ID it names now. Refused when that cannot be
    bound: a name remediate cannot resolve as compose would, a pull_policy that pulls or builds at every `up`, or an
    image the host does not have (`up -d` would pull or build it after `down`: without the registry, the service
    stays down)."""
    service = env.service
    policy = str(env.node.get("pull_policy") or "missing")
    if policy not in KEPT_POLICIES:
        raise StepError(f"service {service!r} has pull_policy: {policy}, so `up -d` pulls or builds its image anew: it "
                        "may run another image than the plan names, or none without the registry",
                        hint="pull or build the image first and set pull_policy: missing (compose's default) or never; "
                             "then run again")
    if env.image_error:
        raise StepError(f"which image `up -d` runs for service {service!r} cannot be told: image: {env.image_text} "
                        f"{env.image_error}", hint="write the image's name without nested variables, or set them in "
                                                   "the project's .env")
    if env.image_text and not env.image:
        raise StepError(f"image: {env.image_text} of service {service!r} resolves to nothing{env.via(env.image_text)}",
                        hint="set the variable in the project's .env")
    if env.image:
        names = [env.image]
    elif env.built:  # v2 names it project-service, v1 project_service; a docker-compose binary may be either
        names = [env.built_images()[0]] if v2 else [env.built_images()[1], env.built_images()[0]]
    else:
        raise StepError(f"service {service!r} has neither image: nor build:; compose cannot start it")
    asked = {} if ids is None else ids
    for name in names:
        if name not in asked:
            asked[name] = image_id(transport, name)
    present = [(name, found) for name in names if (found := asked[name]) is not None]
    if len({found for _, found in present}) > 1:
        raise StepError(f"service {service!r} is built (no image:), and both {present[0][0]} and {present[1][0]} are on "
                        f"{transport.name}: which one `up -d` runs depends on the compose version",
                        hint="name the image the service runs with image: in the compose file")
    if not present:
        how = "build" if env.built else "pull"
        raise StepError(f"image {names[0]} of service {service!r} is not on {transport.name}; `up -d` would {how} it "
                        "after `down`, so nothing was changed", hint=f"{how} the image first, or fix the image tag")
    return present[0]


def running(transport: Transport, project: str) -> Running:
    """service -> the image IDs its containers run now (each replica's), for the project's own containers (compose's
    labels; not `compose run`'s one-offs); a service without a container is absent."""
    listed = transport.run(["docker", "ps", "-aq", "--no-trunc", "--filter", f"label={PROJECT_LABEL}={project}",
                            "--filter", SERVICES_ONLY])
    if not listed.ok:
        refused(transport, "docker ps", listed.output)
        raise StepError(f"{transport.name}: `docker ps` failed: {listed.output.strip()[-300:]}")
    ids = listed.stdout.split()
    if not ids:
        return {}
    seen = transport.run(["docker", "inspect", "--type", "container", "--format", SERVICE_FORMAT, "--", *ids])
    if not seen.ok:
        refused(transport, "docker inspect", seen.output)
        raise StepError(f"{transport.name}: `docker inspect` of project {project}'s containers failed: "
                        f"{seen.output.strip()[-300:]}")
    found: Running = {}
    for line in seen.stdout.splitlines():
        service, _, image = line.strip().partition(" ")
        if service and image and image not in found.setdefault(service, []):
            found[service].append(image)
    return found


def changes(planned: Images, now: Running) -> list[tuple[str, str, str, str]]:
    """(service, image name, an ID one of its containers runs, the ID up -d would run) for each service a container
    of which runs another image than the one bound."""
    found = []
    for s, (name, new) in planned.items():
        old = next((i for i in now.get(s, []) if i != new), None)
        if old is not None:
            found.append((s, name, old, new))
    return found
