"""Starting KServe's model server for ``serve transformer`` and ``serve local``.

Both run ``kserve.ModelServer`` (uvicorn, the v1 and v2 REST endpoints, /metrics) with gRPC off. Before it starts,
:class:`BodyCheck` is put in front of every endpoint: a POST body is bounded (413 past MAX_BODY_BYTES) and an
empty one, or a v1 body that is not JSON, is a 400 naming the body; KServe's own parser would answer those with a
message that names neither. A request refused with 400 is logged on one line, not with the traceback KServe's
handler attaches (a client's mistake is not the server's error, and a client must not fill the log).
"""

from __future__ import annotations

import json
import logging
from typing import Any, Awaitable, Callable, MutableMapping

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 * 1024 * 1024
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodyCheck:
    """ASGI middleware: reads a POST body (bounded), refuses an empty or non-JSON one, then replays it."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await _refuse(send, 413, f"body: larger than {self.max_bytes} bytes")
                return
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        if not body.strip():
            await _refuse(send, 400, 'body: empty; send {"instances": [...]} as JSON')
            return
        if scope["path"].endswith(":predict"):
            try:
                json.loads(body)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                await _refuse(send, 400, f"body: not JSON ({exc})")
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class ClientErrorsOnOneLine(logging.Filter):
    """KServe logs each InvalidInput (a 400) as an ERROR with its traceback: make it one WARNING line."""

    def filter(self, record: logging.LogRecord) -> bool:
        from kserve.errors import InvalidInput  # noqa: PLC0415

        if record.exc_info and isinstance(record.exc_info[1], InvalidInput):
            record.msg, record.args = "refused a request (400): %s", (str(record.exc_info[1])[:500],)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


async def _refuse(send: Send, status: int, error: str) -> None:
    content = json.dumps({"error": error}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]})
    await send({"type": "http.response.body", "body": content})


def start(models: list[Any], http_port: int, predictor_host: str | None, predictor_protocol: str = "v2") -> None:
    """Serve `models` on `http_port` until SIGTERM/SIGINT; the transformer's predictor is at `predictor_host`."""
    from kserve import ModelServer, PredictorConfig  # noqa: PLC0415 - parses sys.argv when imported
    from kserve.model_server import app  # noqa: PLC0415

    app.add_middleware(BodyCheck)
    logging.getLogger("kserve").addFilter(ClientErrorsOnOneLine())
    config = PredictorConfig(predictor_host=predictor_host or "", predictor_protocol=predictor_protocol)
    ModelServer(http_port=http_port, enable_grpc=False, workers=1, predictor_config=config).start(models)
