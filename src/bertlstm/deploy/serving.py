"""An HTTP server for a trained model (FastAPI + uvicorn) whose requests share forward passes.

``POST /predict`` with ``{"texts": [...]}`` answers each text as the model's task does (a classifier: its
label, or multi-label its label set, and per-class probabilities; a tagger: its entities with character
offsets); ``GET /health``; ``GET /metadata``; ``GET /openapi.json`` (and, with ``docs``, the interactive page
at ``/docs``, whose scripts load from a CDN). Requests that arrive within ``max_wait_ms`` of each other are
answered by one forward pass (:class:`~bertlstm.deploy.batcher.MicroBatcher`), so throughput grows with load.
Every request is checked before it joins a batch, so bad input is a 4xx for its sender alone; a failed forward
pass is a 500 for the requests in it, logged. With an API key, a request without it is a 401; without one,
only a loopback address is served unless ``insecure``. On SIGTERM nothing new is accepted, the queued
requests are answered within ``shutdown_grace`` seconds, and what is left then is a 503.
"""

import asyncio
import dataclasses
import hmac
import json
import logging
import os
import signal
import threading
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, StrictStr

from ..core.backends import Predictor
from ..core.data import not_unicode
from ..core.errors import BertLSTMError
from ..core.graph_cache import open_predictor
from .batcher import MicroBatcher, Overloaded, ShuttingDown
from .checks import KEY_ENV, check_serve
from .config import ServeConfig
from .engines import find
from .page import PAGE

logger = logging.getLogger(__name__)
SETTINGS_ENV = "BERTLSTM_SERVE"  # how the settings reach worker processes
INTERNAL_ERROR = "internal error; see the server log"
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


def create_app(settings: ServeConfig, predictor: Predictor | None = None, api_key: str | None = None) -> Any:
    """The FastAPI application; the model is loaded here unless ``predictor`` is given. With ``api_key``, every
    route but ``/health`` answers 401 to a request without it."""
    # the engine's own batch size: `batch_size` here is the micro-batch that concurrent requests share
    if predictor is None:
        ref = find(settings.model or "", settings.backend)
        predictor = open_predictor(
            ref, settings.backend, settings.quantize, settings.device, precision=settings.precision
        )
    own: dict[str, int] = {"max_chars": 5000, "max_body_bytes": 1_000_000}  # the model's own limits, unless given
    own = {name: getattr(settings, name) or getattr(predictor, name, fallback) for name, fallback in own.items()}
    limits = Limits(settings.max_batch, own["max_chars"], own["max_body_bytes"], settings.batch_size)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        wait = settings.max_wait_ms / 1000
        batcher = MicroBatcher(predictor, settings.batch_size, wait, settings.queue_size, settings.shutdown_grace)
        batcher.start()
        app.state.batcher = batcher
        _drain_on_signals(batcher)
        yield
        await batcher.stop()

    docs = "/docs" if settings.docs else None  # the page's scripts load from a CDN: only when asked for
    summary = "BERT→LSTM text classification and tagging"
    app = FastAPI(title="bertlstm", summary=summary, lifespan=lifespan, docs_url=docs, redoc_url=None)
    _routes(app, limits, predictor)
    _errors(app)
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    if api_key is not None:
        app.add_middleware(ApiKey, key=api_key)
    return app


def _drain_on_signals(batcher: MicroBatcher) -> None:
    """SIGTERM and SIGINT start the batcher's drain, then do what they did (uvicorn's graceful shutdown)."""
    if threading.current_thread() is not threading.main_thread():  # a test client runs the app in a thread
        return
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)

        def handler(number: int, frame: Any, previous: Any = previous) -> None:
            loop.call_soon_threadsafe(batcher.drain)
            if callable(previous):
                previous(number, frame)

        signal.signal(sig, handler)


class PredictRequest(BaseModel):
    """``{"texts": ["…", …]}``: the texts to label, in order; ``"explain": true`` adds why (each word's score,
    by ``explain_method``: by default integrated gradients where gradients can be followed, else occlusion)."""

    model_config = ConfigDict(extra="forbid")
    texts: list[StrictStr]
    explain: bool = False
    explain_method: Literal["integrated-gradients", "gradient-x-input", "occlusion"] | None = None
    explain_label: StrictStr | None = None


@dataclasses.dataclass(frozen=True)
class Limits:
    """What a request may hold, and how many texts share a forward pass."""

    max_batch: int
    max_chars: int
    max_body_bytes: int
    batch_size: int


def _routes(app: FastAPI, limits: Limits, predictor: Predictor) -> None:
    @app.post("/predict")
    async def predict(body: PredictRequest, request: Request) -> dict[str, Any]:
        """Each text's answer, as the model's task gives it: a classifier's label (multi-label: the label set
        above threshold) and per-class probabilities; a tagger's entities, ``{"text", "type", "start", "end"}``
        with character offsets."""
        _check(body.texts, limits)
        try:
            answers = await request.app.state.batcher.predict(body.texts)
        except Overloaded:
            raise HTTPException(503, "too many requests are waiting; try again shortly") from None
        except ShuttingDown:
            raise HTTPException(503, "the server is shutting down; try another one, or again shortly") from None
        except Exception:  # the forward pass failed; the batcher has logged why
            raise HTTPException(500, INTERNAL_ERROR) from None
        if body.explain:
            for answer, why in zip(answers, await _explain(predictor, body, request.app.state.batcher), strict=True):
                answer.update(why)
        return {"predictions": answers}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        """A page to try the model in a browser: it loads nothing from elsewhere, talks only to this server,
        and no other site may frame it (its key box must not be clickjacked)."""
        return HTMLResponse(PAGE, headers=PAGE_HEADERS)

    @app.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        """Up and ready, and how requests were batched so far."""
        return {"status": "ok", **request.app.state.batcher.stats}

    @app.get("/metadata")
    async def metadata() -> dict[str, Any]:
        """The model: labels, mode, encoder, max length, format version, back end; and the request limits."""
        return {**predictor.metadata(), "limits": dataclasses.asdict(limits)}


def _check(texts: list[str], limits: Limits) -> None:
    if not texts:
        raise HTTPException(422, "texts is empty: send at least one text")
    if len(texts) > limits.max_batch:
        raise HTTPException(422, f"{len(texts)} texts in one request; at most {limits.max_batch}")
    long = [i for i, text in enumerate(texts) if len(text) > limits.max_chars]
    if long:
        raise HTTPException(422, f"text {long[0]} has more than {limits.max_chars} characters")
    blank = [i for i, text in enumerate(texts) if not text.strip()]
    if blank:
        raise HTTPException(422, f"text {blank[0]} is empty")
    broken = not_unicode(texts)
    if broken:
        raise HTTPException(422, f"text {broken[0]} is not valid Unicode (it holds a lone surrogate)")


async def _explain(predictor: Predictor, body: PredictRequest, batcher: MicroBatcher) -> list[dict[str, Any]]:
    """Why, for each text of a request; what cannot be explained is a 400. It runs on the batcher's one worker
    thread, between forward passes: the gradient methods hook the model's embeddings while they run."""

    def run() -> list[dict[str, Any]]:
        return predictor.explain(body.texts, method=body.explain_method, label=body.explain_label)

    try:
        return await asyncio.get_running_loop().run_in_executor(batcher.executor, run)
    except BertLSTMError as err:
        raise HTTPException(400, str(err)) from None


def _errors(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        errors = err.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse({"detail": "the body is not valid JSON"}, status_code=400)
        first = errors[0] if errors else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        return JSONResponse({"detail": f"{where or 'body'}: {first.get('msg', 'invalid')}"}, status_code=422)

    @app.exception_handler(Exception)
    async def internal(request: Request, err: Exception) -> JSONResponse:
        logger.exception(f"{request.method} {request.url.path} failed")
        return JSONResponse({"detail": INTERNAL_ERROR}, status_code=500)


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is a 413, whether it says its length or not."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._too_large(send)
        seen = 0

        async def limited() -> dict[str, Any]:  # a body that does not say its length is counted as it comes
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise HTTPException(413, f"request body over {self.max_bytes} bytes")  # the route answers it
            return message

        await self.app(scope, limited, send)

    async def _too_large(self, send: Any) -> None:
        body = json.dumps({"detail": f"request body over {self.max_bytes} bytes"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


OPEN_PATHS = ("/health", "/")  # what answers without the API key


class ApiKey:
    """ASGI middleware: every route but ``/health`` and the page (``/``, which holds no data and asks for the
    key) needs the key, as ``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` (compared in constant time);
    without it, 401."""

    def __init__(self, app: Any, key: str) -> None:
        self.app, self.key = app, key.encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") in OPEN_PATHS or self._given(scope):
            return await self.app(scope, receive, send)
        body = json.dumps({"detail": "this server needs an API key: Authorization: Bearer KEY"}).encode()
        headers = [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _given(self, scope: dict[str, Any]) -> bool:
        headers = dict(scope.get("headers", []))
        given = headers.get(b"x-api-key") or headers.get(b"authorization", b"").removeprefix(b"Bearer ").strip()
        return hmac.compare_digest(given, self.key)


def app_from_environment() -> Any:
    """For ``uvicorn --factory`` in each worker process: the settings come as JSON in ``$BERTLSTM_SERVE``."""
    settings = ServeConfig.from_dict(json.loads(os.environ[SETTINGS_ENV]))
    return create_app(settings, api_key=os.environ.get(KEY_ENV) or None)


def serve(settings: ServeConfig) -> None:
    """Run the server until SIGINT or SIGTERM: the queued requests are answered within ``shutdown_grace``
    seconds, and what is left then is answered 503. The key, the address and the port are checked before the
    model is loaded."""
    import uvicorn  # the serve extra; the app's own imports above checked that it is there

    key = check_serve(settings)
    options: dict[str, Any] = {"host": settings.host, "port": settings.port, "log_config": None}
    options["timeout_graceful_shutdown"] = settings.shutdown_grace + 5  # a backstop: the batcher ends sooner
    if settings.workers == 1:
        uvicorn.run(create_app(settings, api_key=key), **options)
        return
    os.environ[SETTINGS_ENV] = json.dumps(settings.to_dict())  # what the worker processes start from
    if key is not None:
        os.environ[KEY_ENV] = key
    uvicorn.run("bertlstm.deploy.serving:app_from_environment", factory=True, workers=settings.workers, **options)
