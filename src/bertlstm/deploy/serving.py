"""An HTTP server for a trained model (FastAPI + uvicorn) whose requests share forward passes.

``POST /predict`` with ``{"texts": [...]}`` answers each text as the model's task does (a classifier: its
label, or multi-label its label set, and per-class probabilities; a tagger: its entities with character
offsets); ``GET /health``;
``GET /metadata``; OpenAPI docs at ``/docs``. Requests that arrive within ``max_wait_ms`` of each other are
answered by one forward pass of up to ``batch_size`` texts (:class:`MicroBatcher`), so throughput grows with
load. Every request is checked before it joins a batch, so bad input is a 4xx for its sender alone; a failed
forward pass is a 500 for the requests in it, logged. On SIGTERM uvicorn stops accepting connections and the
requests in flight are answered before it exits.
"""

import asyncio
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, StrictStr

from ..core.backends import Predictor
from ..core.errors import BertLSTMError
from ..tasks.registry import open_model
from .config import ServeConfig

logger = logging.getLogger(__name__)
SETTINGS_ENV = "BERTLSTM_SERVE"  # how the settings reach worker processes
INTERNAL_ERROR = "internal error; see the server log"


class Overloaded(Exception):
    """The queue of waiting requests is full."""


class MicroBatcher:
    """Collects concurrent requests into forward passes of up to ``batch_size`` texts.

    The first request of a batch waits at most ``max_wait`` seconds for others; the forward pass runs in one
    worker thread, so the event loop keeps accepting requests meanwhile.
    """

    def __init__(self, predictor: Predictor, batch_size: int, max_wait: float, queue_size: int) -> None:
        self.predictor, self.batch_size, self.max_wait = predictor, batch_size, max_wait
        self.queue: asyncio.Queue[tuple[list[str], asyncio.Future[list[Any]]]] = asyncio.Queue(queue_size)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="bertlstm-predict")
        self.stats = {"requests": 0, "forward_passes": 0, "texts": 0}
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Answer what is queued, then stop."""
        await self.queue.join()
        if self.task is not None:
            self.task.cancel()
        self.executor.shutdown(wait=True)

    async def predict(self, texts: list[str]) -> list[Any]:
        """The answer for each of ``texts``, computed together with other requests' texts."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait((texts, future))
        except asyncio.QueueFull:
            raise Overloaded from None
        self.stats["requests"] += 1
        return await future

    async def _next_batch(self) -> list[tuple[list[str], asyncio.Future[list[Any]]]]:
        loop = asyncio.get_running_loop()
        batch = [await self.queue.get()]
        size, deadline = len(batch[0][0]), loop.time() + self.max_wait
        while size < self.batch_size:
            try:
                item = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self.queue.get(), remaining)
                except TimeoutError:
                    break
            batch.append(item)
            size += len(item[0])
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            texts = [text for request, _ in batch for text in request]
            try:
                answers = await loop.run_in_executor(self.executor, self.predictor.answer, texts)
                self.stats["forward_passes"] += 1
                self.stats["texts"] += len(texts)
                start = 0
                for request, future in batch:
                    if not future.done():  # its client may have gone
                        future.set_result(answers[start : start + len(request)])
                    start += len(request)
            except Exception as err:  # a failed pass fails its requests, never the server
                logger.exception(f"forward pass over {len(texts)} texts failed")
                for _, future in batch:
                    if not future.done():
                        future.set_exception(err)
            finally:
                for _ in batch:
                    self.queue.task_done()


def create_app(settings: ServeConfig, predictor: Predictor | None = None) -> Any:
    """The FastAPI application; the model is loaded here unless ``predictor`` is given."""
    # the engine's own batch size: `batch_size` here is the micro-batch that concurrent requests share
    predictor = predictor or open_model(settings.model or "", settings.backend, settings.quantize, settings.device)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        batcher = MicroBatcher(predictor, settings.batch_size, settings.max_wait_ms / 1000, settings.queue_size)
        batcher.start()
        app.state.batcher = batcher
        yield
        await batcher.stop()

    app = FastAPI(title="bertlstm", summary="BERT→LSTM text classification and tagging", lifespan=lifespan)
    _routes(app, settings, predictor)
    _errors(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app


class PredictRequest(BaseModel):
    """``{"texts": ["…", …]}``: the texts to label, in order."""

    model_config = ConfigDict(extra="forbid")
    texts: list[StrictStr]


def _routes(app: FastAPI, settings: ServeConfig, predictor: Predictor) -> None:
    @app.post("/predict")
    async def predict(body: PredictRequest, request: Request) -> dict[str, Any]:
        """Each text's answer, as the model's task gives it: a classifier's label (multi-label: the label set
        above threshold) and per-class probabilities; a tagger's entities, ``{"text", "type", "start", "end"}``
        with character offsets."""
        _check(body.texts, settings)
        try:
            answers = await request.app.state.batcher.predict(body.texts)
        except Overloaded:
            raise HTTPException(503, "too many requests are waiting; try again shortly") from None
        except Exception:  # the forward pass failed; the batcher has logged why
            raise HTTPException(500, INTERNAL_ERROR) from None
        return {"predictions": answers}

    @app.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        """Up and ready, and how requests were batched so far."""
        return {"status": "ok", **request.app.state.batcher.stats}

    @app.get("/metadata")
    async def metadata() -> dict[str, Any]:
        """The model: labels, mode, encoder, max length, format version, back end; and the request limits."""
        limits = {k: getattr(settings, k) for k in ("max_batch", "max_chars", "max_body_bytes", "batch_size")}
        return {**predictor.metadata(), "limits": limits}


def _check(texts: list[str], settings: ServeConfig) -> None:
    if not texts:
        raise HTTPException(422, "texts is empty: send at least one text")
    if len(texts) > settings.max_batch:
        raise HTTPException(422, f"{len(texts)} texts in one request; at most {settings.max_batch}")
    long = [i for i, text in enumerate(texts) if len(text) > settings.max_chars]
    if long:
        raise HTTPException(422, f"text {long[0]} has more than {settings.max_chars} characters")
    blank = [i for i, text in enumerate(texts) if not text.strip()]
    if blank:
        raise HTTPException(422, f"text {blank[0]} is empty")


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


def app_from_environment() -> Any:
    """For ``uvicorn --factory`` in each worker process: the settings come as JSON in ``$BERTLSTM_SERVE``."""
    return create_app(ServeConfig.from_dict(json.loads(os.environ[SETTINGS_ENV])))


def serve(settings: ServeConfig) -> None:
    """Run the server until SIGINT or SIGTERM; requests in flight are answered before it stops."""
    import uvicorn  # the serve extra; the app's own imports above checked that it is there

    if not settings.model:
        raise BertLSTMError("serving needs a `model`: a model folder or an exported .onnx file")
    options: dict[str, Any] = {"host": settings.host, "port": settings.port, "log_config": None}
    options["timeout_graceful_shutdown"] = 30  # seconds to answer the requests in flight after SIGTERM
    if settings.workers == 1:
        uvicorn.run(create_app(settings), **options)
        return
    os.environ[SETTINGS_ENV] = json.dumps(settings.to_dict())
    uvicorn.run("bertlstm.deploy.serving:app_from_environment", factory=True, workers=settings.workers, **options)
