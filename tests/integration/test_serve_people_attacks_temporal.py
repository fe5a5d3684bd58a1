"""H9 finding 6 on serve --backend temporal (a real Temporal dev server, the runs on a fake transport): the approvals
a revoked token made no longer count there either."""

from __future__ import annotations

import uuid
from pathlib import Path

from starlette.testclient import TestClient

from remediate.serve import app as app_mod
from remediate.serve.identity import Tokens
from tests.unit.test_serve import TOKEN, alert

from . import test_serve_temporal as base
from .test_serve_four_eyes_temporal import Serve, pending
from .test_serve_temporal import Host, replicas

host = base.host  # the fixture: the fake host, /etc/app.conf broken


def test_a_revoked_persons_approval_no_longer_counts_on_temporal(tmp_path: Path, temporal: str, host: Host) -> None:
    """bob's stolen token approves (1 of 2), bob's token is revoked; alice's approval must not run the fix on it."""
    (replica,) = replicas(tmp_path, temporal, host, count=1, approvals=2)
    tokens = Tokens(tmp_path)  # the replica's state directory (its runs' work_dir)
    people = {name: {"Authorization": f"Bearer {tokens.add(name, ['admin'])}"} for name in ("alice", "bob")}
    serve = Serve(replica.backend, TestClient(app_mod.build(replica.backend, TOKEN, tokens=tokens)), people)
    try:
        number = serve.post(alert(uuid.uuid4().hex, "h1:9100"))
        seen = pending(serve, number)["plan_identity"]
        assert serve.act(number, "approve", "bob", plan_identity=seen).status_code == 200
        assert tokens.revoke("bob")
        refused = serve.act(number, "approve", "alice", plan_identity=seen)
        assert refused.status_code == 409 and "bob has no live token" in refused.json()["error"], refused.text
        incident = serve.incident(number)
        assert incident["state"] == "pending" and host.files["/etc/app.conf"].content == b"broken\n"
        said = [(h["what"], h["detail"]) for h in incident["history"]]
        assert any(what == "approval refused" and "bob has no live token" in detail for what, detail in said), said
    finally:
        host.gate.set()
        replica.backend.stop()
