"""Re-create a compose project so its container runs what the file says, then wait until it answers SMTP."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from remediate.contract.plan import Applied, Plan
from remediate.errors import InputError, NotReversed, StepError
from remediate.kinds import Param, Step, argv, register
from remediate.mail import resolve
from remediate.probes import images, readiness
from remediate.probes.containers import compose_command, container_name, env_list, image_env, inspect, logs, postconf
from remediate.probes.images import short_id
from remediate.probes.listen import Listener, smtp_listener
from remediate.probes.waiting import wait
from remediate.transport import Transport

if TYPE_CHECKING:
    from remediate.contract.host import StepContext as Context

#: A rollback has restored the bytes and re-created the container; it does not sit out a full readiness wait.
ROLLBACK_WAIT: Final = 15
#: A container's ID, as docker inspect gives it (the journal's undo_replacing is one, or is not believed).
CONTAINER_ID: Final = re.compile(r"[0-9a-f]{64}")
#: image_change: when `up -d` would run another image than the container runs now (its tag moved since it started).
IMAGE_CHANGES: Final = ("refuse", "allow")


@register
class ComposeRestart(Step):
    """Validate, then `down` and `up -d` a compose project so the container runs what the file says."""

    kind = "compose-restart"
    reconciler = True
    #: Where the host reaches the service's SMTP listener, as inferred (or smtp_address), for later checks.
    outputs = ("smtp_address", "smtp_port")
    params = {
        "dir": Param(str, required=True, help="the compose project's folder"),
        "file": Param(str, default="docker-compose.yml"),
        "service": Param(str, required=True),
        "container": Param(str, required=True),
        "smtp_address": Param((str, type(None)), default="",
                              help="where the host reaches the SMTP listener (empty: inferred from the compose service)"),
        "smtp_port": Param(int, default=25),
        "timeout": Param(int, default=90, help="seconds to wait for the container to answer"),
        "ready": Param(str, default="smtp", help="what proves it ready: smtp (a 220 greeting), lmtp (greeting and "
                                                 "LHLO), tcp (a connection), command (ready_command exits 0), health "
                                                 "(docker's healthcheck)"),
        "ready_command": Param((str, list), command=True, help="for ready: command, run on the host"),
        "image_change": Param(str, default="refuse", help="when `up -d` would run another image than the container "
                                                          "runs now (its tag was moved since it started): refuse (the "
                                                          "plan fails, nothing changes) or allow (the plan says so)"),
    }

    def validate(self) -> None:
        at = f"{self.spec.where}: step {self.id!r}"
        container_name(self.p["container"], f"{at}: container")
        if self.p["ready"] not in readiness.KINDS:
            raise InputError(f"{at}: ready must be one of {', '.join(readiness.KINDS)}, not {self.p['ready']!r}")
        if self.p["ready"] == "command" and not self.p["ready_command"]:
            raise InputError(f"{at}: ready: command needs ready_command")
        if self.p["image_change"] not in IMAGE_CHANGES:
            raise InputError(f"{at}: image_change must be one of {', '.join(IMAGE_CHANGES)}, not "
                             f"{self.p['image_change']!r}")
        if not 0 < self.p["smtp_port"] < 65536:
            raise InputError(f"{self.spec.where}: step {self.id!r}: smtp_port must be 1 to 65535, not {self.p['smtp_port']}")

    @property
    def path(self) -> str:
        return posixpath.join(str(self.p["dir"]), str(self.p["file"]))

    def _base(self, transport: Transport) -> list[str]:
        return [*compose_command(transport), "--project-directory", self.p["dir"], "-f", self.path]

    def listener(self, transport: Transport, env: resolve.ServiceEnv) -> Listener:
        """Where to probe Postfix when the service is as `env` reads it: inferred from the service, or smtp_address."""
        def ask() -> str | None:
            seen = postconf(transport, self.p["container"], ["inet_interfaces"])
            return seen.get("inet_interfaces") if seen else None

        return smtp_listener(env.node, env.resolved(), port=self.p["smtp_port"], override=self.p["smtp_address"] or "",
                             ask=ask)

    def plan(self, ctx: Context) -> Plan:
        transport = ctx.transport(self.target)
        current = ctx.read(self.target, self.path)
        if current is None:
            raise InputError(f"{ctx.target_name(self.target)}:{self.path} does not exist", hint="check compose_dir")
        text = current.content.decode("utf-8", "replace")
        reader: resolve.Reader = lambda path: ctx.read(self.target, path)  # noqa: E731 - as earlier steps leave them
        env = resolve.read(reader, self.path, self.p["service"], text)
        base = " ".join(self._base(transport))
        facts = inspect(transport, self.p["container"])
        why = self._changed_inputs(ctx, env) or self._drift(transport, facts, env.resolved())
        listener = self.listener(transport, env)
        outputs = {"smtp_address": listener.address, "smtp_port": listener.port}
        if why is None:
            return self.planned(f"{self.p['container']} already runs with the environment in {self.path}, and no file "
                             "it reads changes in this run", outputs=outputs)
        bound, said = self._images_plan(transport, env, facts)
        command = argv(self.p["ready_command"]) if self.p["ready_command"] else None
        return self.planned(f"{why}{said}; then wait for {readiness.describe(self.p['ready'], listener, command)}",
                         commands=(f"{base} config -q", f"{base} down", f"{base} up -d"),
                         data={"listener": [listener.address, listener.port, listener.why], "images": bound},
                         outputs=outputs)

    def _images_plan(self, transport: Transport, env: resolve.ServiceEnv,
                     facts: Mapping[str, Any] | None) -> tuple[images.Images, str]:
        """The image `up -d` will run for every service of the project (`down` and `up -d` act on all of them), by
        name and ID, as the plan's identity binds them (a tag moved before the apply makes another plan), and what
        the plan says of them. A change of image is refused unless image_change: allow: a restart made to change
        configuration does not also change the software, unless the reviewer saw it."""
        bound = images.targets(transport, env, v2=compose_command(transport)[0] == "docker")
        changed = images.changes(bound, self._running(transport, env, facts))
        if changed and self.p["image_change"] != "allow":
            raise StepError(f"{self._changes(changed)} on {transport.name} now: `up -d` would change the software as "
                            "well as its configuration", hint=self._pin_hint(changed))
        will = ", ".join(f"{name} as {short_id(new)}, not the {short_id(old)} {self._who(s)} runs now"
                         for s, name, old, new in changed)
        return bound, (f"; `up -d` will run {will} (image_change: allow)" if changed else "")

    def _running(self, transport: Transport, env: resolve.ServiceEnv, facts: Mapping[str, Any] | None) -> images.Running:
        """service -> the image IDs its containers run now: the project's (named as compose labelled this step's own
        container, else as remediate resolves it), and this step's own container."""
        labels = (facts or {}).get("Config", {}).get("Labels") or {}
        now = images.running(transport, str(labels.get(images.PROJECT_LABEL) or env.project))
        if facts is not None and facts["Image"] not in now.setdefault(self.p["service"], []):
            now[self.p["service"]].append(facts["Image"])
        return now

    def _who(self, service: str) -> str:
        return str(self.p["container"]) if service == self.p["service"] else f"the container of service {service!r}"

    def _changes(self, changed: list[tuple[str, str, str, str]]) -> str:
        return "; ".join(f"{self._who(s)} runs image {short_id(old)}, but {name} names {short_id(new)}"
                         for s, name, old, new in changed)

    def _pin_hint(self, changed: list[tuple[str, str, str, str]]) -> str:
        names = ", ".join(f"{name.split('@')[0]}@<digest>" for _, name, _, _ in changed)
        return (f"pin the image each container runs ({names}) in the compose file, or set image_change: allow on step "
                f"{self.id!r} to run the new one")

    def _changed_inputs(self, ctx: Context, env: resolve.ServiceEnv) -> str | None:
        """Why to restart when an earlier step changes a file the service reads: the compose file, an env_file, or
        a bind-mounted file or folder; None when none does."""
        folder = posixpath.dirname(self.path)
        reads = {self.path, *(path for path, _ in env.env_files)}
        for volume in env.node.get("volumes") or []:
            source = volume.get("source") if isinstance(volume, dict) and volume.get("type", "bind") == "bind" else (
                str(volume).split(":", 1)[0] if isinstance(volume, str) and ":" in str(volume) else None)
            if source and source.startswith(("/", ".")):
                reads.add(posixpath.normpath(posixpath.join(folder, source)))
        host = ctx.target_name(self.target)
        changed = [f.path for p in ctx.plans for f in p.files if f.target == host]
        touched = [c for c in changed if any(c == r or c.startswith(r.rstrip("/") + "/") for r in reads)]
        if not touched:
            return None
        return f"{', '.join(dict.fromkeys(touched))} change{'s' if len(touched) == 1 else ''} in this run, and " \
               f"{self.p['container']} reads {'it' if len(touched) == 1 else 'them'}"

    def _drift(self, transport: Transport, facts: Mapping[str, Any] | None,
               desired: Mapping[str, str | None]) -> str | None:
        if facts is None:
            return f"{self.p['container']} does not exist"
        if not facts["State"]["Running"]:
            return f"{self.p['container']} is not running ({facts['State']['Status']})"
        running = env_list(facts["Config"]["Env"])
        baked = image_env(transport, facts["Image"])
        for key, value in desired.items():
            if value is not None and "$" not in value and running.get(key) != value:
                return f"{self.p['container']} runs with {key}={running.get(key, '(unset)')}; the file says {key}={value}"
        stale = [k for k in running if k not in desired and k not in baked]
        if stale:
            return f"{self.p['container']} still runs with {stale[0]}={running[stale[0]]}, which the file no longer sets"
        return None

    def apply(self, ctx: Context, plan: Plan) -> None:
        state = ctx.read(self.target, self.path)  # as the steps before this one left it
        self._converge(ctx, state.content.decode("utf-8", "replace") if state else "", plan.data.get("images"))

    def _converge(self, ctx: Context, text: str, planned: images.Images | None = None, *,
                  undoing: bool = False, replacing: Any = None, down: bool = True) -> resolve.ServiceEnv:
        """Refuse before `down` unless `up` can succeed without the network and, in an apply, would run the images
        the plan bound; then down (unless not down) and up -d. An apply journals the images the containers ran, for
        its rollback; an undo, the ID of the container it replaces (replacing), for a retry of the rollback."""
        transport = ctx.transport(self.target)
        base = self._base(transport)
        valid = transport.run([*base, "config", "-q"])
        if not valid.ok:
            raise StepError(f"{self.path} is not a valid compose file: {valid.output.strip()[-400:]}")
        env = resolve.read(transport.read, self.path, self.p["service"], text)
        if undoing:  # back to the file as it was: its own image must be here, as before (nothing else was bound then)
            if env.image and images.image_id(transport, env.image) is None:
                raise StepError(f"image {env.image} of service {self.p['service']!r} is not on {transport.name}; `up` "
                                "would have to pull it, so the running container was left alone",
                                hint="pull or load the image first, or fix the image tag")
            ctx.record(self.id, compose=base, down_started=True, undo_replacing=replacing)
        else:
            bound = images.targets(transport, env, v2=base[0] == "docker")
            now = self._running(transport, env, inspect(transport, self.p["container"]))
            self._as_planned(transport, planned, bound, now)
            ctx.record(self.id, compose=base, down_started=True, image_before=now)
        for action in (["down"], ["up", "-d"])[0 if down else 1:]:
            result = transport.run([*base, *action], timeout=300)
            if not result.ok:
                raise StepError(f"`{' '.join(action)}` failed in {self.p['dir']}: {result.output.strip()[-400:]}")
        return env

    def _as_planned(self, transport: Transport, planned: images.Images | None, bound: images.Images,
                    now: images.Running) -> None:
        """Before `down`: the images are the ones the plan bound and, unless image_change: allow, still the ones the
        containers run. planned None: a plan made without images (nothing to compare)."""
        reviewed = planned if planned is not None else bound
        for service in sorted(set(reviewed) | set(bound)):
            was, is_ = reviewed.get(service), bound.get(service)
            if was == is_:
                continue
            if was is None or is_ is None:
                raise StepError(f"service {service!r} is {'not ' if is_ is None else ''}among those `up -d` starts now, "
                                "unlike when the plan was reviewed; nothing was stopped", hint="plan again")
            raise StepError(f"{is_[0]} names image {short_id(is_[1])} on {transport.name} now, but the plan was reviewed "
                            f"when {was[0]} named {short_id(was[1])}; nothing was stopped",
                            hint="plan again, and review the images the restart would run")
        changed = images.changes(bound, now)
        if changed and self.p["image_change"] != "allow":
            raise StepError(f"{self._changes(changed)} now: `up -d` would change the software as well as its "
                            "configuration; nothing was stopped",
                            hint=f"set image_change: allow on step {self.id!r} to run the new one")

    def verify(self, ctx: Context, plan: Plan, applied: Applied) -> str:
        address, port, why = plan.data["listener"]
        return self._ready(ctx, Listener(address, port, why), self.p["timeout"])

    def _ready(self, ctx: Context, listener: Listener, seconds: float) -> str:
        """Wait until the container is ready as `ready` says; explain a timeout in full."""
        transport = ctx.transport(self.target)
        container, kind = self.p["container"], self.p["ready"]
        command = argv(self.p["ready_command"]) if self.p["ready_command"] else None

        def explain() -> str:
            tail = [line for line in logs(transport, container) if line.strip()][-1:]
            came = f"the address came from {listener.why}; " if kind in ("smtp", "lmtp", "tcp") else ""
            return f"{came}{container}'s last log line: {tail[0].strip()[:200] if tail else '(empty)'}"

        return wait(seconds, readiness.failure(kind, container, listener, command),
                    lambda: readiness.ready(transport, kind, container, listener, command),
                    explain=explain, hint="if the service listens elsewhere, set smtp_address; if it is slow to start, "
                                          "raise restart_timeout")

    def rollback(self, ctx: Context, entry: Mapping[str, Any]) -> str:
        if not entry.get("down_started"):
            return f"{self.p['container']} was never stopped; nothing to undo"
        transport = ctx.transport(self.target)
        state = transport.read(self.path)  # the restored file, not the plan's
        text = state.content.decode("utf-8", "replace") if state else ""
        before = entry.get("image_before")  # read first: entry is the journal's own record, which _converge updates
        replaced, facts = entry.get("undo_replacing"), inspect(transport, self.p["container"])
        again = not self._undone_before(transport, facts, replaced,
                                        resolve.read(transport.read, self.path, self.p["service"], text))
        env = self._converge(ctx, text, undoing=True, down=again,
                             replacing=facts["Id"] if again and facts and facts.get("Id") else replaced)
        restored = f"re-created {self.p['container']} from the restored {self.path} (fresh config volume)" if again \
            else (f"{self.p['container']} runs with the restored {self.path}'s environment already, in another "
                  f"container than the {str(replaced)[:12]} this rollback set out to replace (re-created by an attempt cut "
                  "short): not stopped again; `up -d` only, for any service that attempt left stopped")
        if before:
            self._same_images(transport, env, before, restored)
        try:
            listener = self.listener(transport, env)
            ready = self._ready(ctx, listener, min(ROLLBACK_WAIT, self.p["timeout"]))
        except StepError as e:  # the original answered (or not) before the run too: report, do not fail
            return f"{restored}; readiness not confirmed: {e.message}"
        return f"{restored}; {ready}"

    def _undone_before(self, transport: Transport, facts: Mapping[str, Any] | None, replaced: Any,
                       env: resolve.ServiceEnv) -> bool:
        """Whether an earlier attempt of this rollback, cut short (a killed worker, a power cut), re-created the
        container already: it recorded the ID of the container it replaced (on the host's copy of the journal, before
        `down`, which is after every file was restored: reconcilers are undone last), and the one running now is
        another, made after that record, and runs with the environment the restored file sets. A rollback undoes at
        least once; this spares the service a second stop (`up -d` still runs: compose starts what is not running and
        re-creates what differs from the file, beyond the environment too)."""
        if not (isinstance(replaced, str) and CONTAINER_ID.fullmatch(replaced)) or facts is None \
                or facts.get("Id") in (None, replaced) or not facts["State"]["Running"]:
            return False
        return self._drift(transport, facts, env.resolved()) is None

    def _same_images(self, transport: Transport, env: resolve.ServiceEnv, before: Mapping[str, Any] | str,
                     restored: str) -> None:
        """A rollback that re-created a container from another image than it ran before the run (its tag moved,
        and image_change: allow ran the new one) has not reversed the restart: it says so (NotReversed). before:
        the images the apply journalled, service -> IDs (one ID, in journals of the first version of this record)."""
        was = before if isinstance(before, Mapping) else {self.p["service"]: before}
        now = self._running(transport, env, inspect(transport, self.p["container"]))
        other = []
        for s, old in was.items():
            old_ids = [old] if isinstance(old, str) else list(old)
            if now.get(s) and set(now[s]) != set(old_ids):
                other.append((s, ", ".join(map(short_id, old_ids)), ", ".join(map(short_id, now[s]))))
        if other:
            said = "; ".join(f"{'it' if s == self.p['service'] else self._who(s)} runs image {new}, not the "
                             f"{old} it ran before the run" for s, old, new in other)
            raise NotReversed(f"{restored}, but {said}: its tag names another image now",
                              hint="tag the old image again and run `remediate rollback` once more, or accept the new "
                                   "one with --skip")
