"""Request bodies as serve reads them: bounded before they are read, a form urlencoded only (nothing is ever spooled
to disk), JSON through jsonin; and `Bad`, the refusal (status and reason) the app answers as JSON."""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import parse_qs

from starlette.requests import Request

from remediate import jsonin, redact
from remediate.cli.output import visible
from remediate.errors import InputError

MAX_FORM: Final = 8 << 10  # the page's forms: a token, a name, a reason (1000 characters) and the CSRF field
FORM: Final = "application/x-www-form-urlencoded"


class Bad(Exception):
    """A request serve refuses: answered `status` with {"error": reason} (app.py's exception handlers)."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers


async def bounded(request: Request, limit: int) -> bytes:
    """The body, refused (413) past `limit` bytes: by its Content-Length before reading, else as it streams in. Read
    once per request (the CSRF check and the handler share it)."""
    kept = getattr(request.state, "body", None)
    if kept is not None:
        return bytes(kept)
    size = request.headers.get("content-length")
    if size is not None and (not size.isdigit() or int(size) > limit):
        raise Bad(413, f"the body is larger than {limit} bytes")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise Bad(413, f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    request.state.body = b"".join(chunks)
    return bytes(request.state.body)


async def form(request: Request) -> dict[str, str]:
    """A page form: urlencoded only (415 otherwise: no multipart parser, so no file part is ever spooled to disk), at
    most MAX_FORM bytes and a few fields; each field's first value."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind != FORM:
        raise Bad(415, f"a form is sent as {FORM}, not {kind or 'without a Content-Type'}")
    raw = await bounded(request, MAX_FORM)
    try:
        fields = parse_qs(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=10)
    except (UnicodeDecodeError, ValueError) as e:
        raise Bad(400, f"the form cannot be read: {e}") from None
    return {k: v[0] for k, v in fields.items()}


async def body_json(request: Request, limit: int) -> Any:
    """The JSON body, at most `limit` bytes; {} when there is none. Unreadable JSON is an InputError (400)."""
    raw = await bounded(request, limit)
    if not raw:
        return {}
    try:
        return jsonin.loads(raw, what="the body")
    except InputError as e:
        raise Bad(400, str(e)) from None


def one_line(name: str, limit: int = 100) -> str:
    """A name a person typed, as the audit log keeps it: secrets masked, whitespace (newlines included) as one space,
    any other control character made visible (output.visible), at most `limit` characters."""
    return str(visible(redact.text(" ".join(name.split()))))[:limit]
