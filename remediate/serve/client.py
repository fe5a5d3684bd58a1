"""The CLI's side of serve's API: `remediate incidents`, `approve`, `deny` talk to a running serve over HTTP, with the
person's own named token (--token-file or $REMEDIATE_SERVE_TOKEN); and where serve keeps its state."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from remediate import private
from remediate.errors import InputError, RemediateError

SERVER_ENV = "REMEDIATE_SERVER"
TOKEN_ENV = "REMEDIATE_SERVE_TOKEN"
DEFAULT_LISTEN = "127.0.0.1:9095"


def token(token_file: Path | None) -> str:
    """--token-file, else $REMEDIATE_SERVE_TOKEN; refused when neither gives one."""
    if token_file is not None:
        try:
            value = token_file.read_text().strip()
        except OSError as e:
            raise InputError(f"{token_file}: cannot read the token file: {e.strerror}") from None
        if not value:
            raise InputError(f"{token_file}: the token file is empty")
        return value
    value = os.environ.get(TOKEN_ENV, "").strip()
    if not value:
        raise InputError("no token for serve's API", hint=f"export {TOKEN_ENV}, or pass --token-file FILE")
    return value


def state_dir(value: Path | None) -> Path:
    """serve's state directory: --state-dir, else $XDG_STATE_HOME/remediate/serve (its database, its lock, its
    people's tokens)."""
    if value is not None:
        return value
    base = private.state_base()
    return base / "remediate" / "serve"


def server(url: str | None) -> str:
    from urllib.parse import urlsplit
    url = (url or os.environ.get(SERVER_ENV) or f"http://{DEFAULT_LISTEN}").rstrip("/")
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise InputError(f"--server {url!r} is not an http(s) URL", hint=f"for example http://{DEFAULT_LISTEN}")
    return url


class Client:
    def __init__(self, url: str, secret: str, timeout: float = 30.0) -> None:
        self.url = url
        self.secret = secret
        self.timeout = timeout

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        import urllib.error  # here: `remediate --help` should not pay for urllib
        import urllib.request
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.secret}", "Content-Type": "application/json",
            "User-Agent": "remediate-cli"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as e:
            try:
                why = json.loads(e.read()).get("error") or e.reason
            except (ValueError, AttributeError):
                why = e.reason
            hint = f"check {TOKEN_ENV} or --token-file" if e.code == 401 else None
            raise RemediateError(f"{self.url}{path}: HTTP {e.code}: {why}", hint=hint) from None
        except OSError as e:
            raise RemediateError(f"cannot reach serve at {self.url}: {getattr(e, 'reason', e)}",
                                 hint=f"is `remediate serve` running there? (--server URL or ${SERVER_ENV})") from None
