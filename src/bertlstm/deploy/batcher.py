"""Concurrent requests answered by shared forward passes, and a shutdown that answers every request.

A request's texts wait at most ``max_wait`` seconds for other requests' to share a forward pass of up to
``batch_size`` texts; the pass runs in one worker thread, so the event loop keeps accepting requests meanwhile.
On shutdown (:meth:`MicroBatcher.drain`) nothing more is accepted, the queued work is answered while the grace
period lasts, and what is left at its end is refused at once (``ShuttingDown``): every request gets an answer,
none an error, and the server exits within the grace period.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..core.backends import Predictor

logger = logging.getLogger(__name__)
Item = tuple[list[str], "asyncio.Future[list[Any]]"]  # a request's texts and where its answers go


class Overloaded(Exception):
    """The queue of waiting requests is full."""


class ShuttingDown(Exception):
    """The server is stopping: the request is not (or no longer) going to be answered."""


class MicroBatcher:
    """Collects concurrent requests into forward passes of up to ``batch_size`` texts; see the module."""

    def __init__(self, predictor: Predictor, batch_size: int, max_wait: float, queue_size: int, grace: float) -> None:
        self.predictor, self.batch_size, self.max_wait, self.grace = predictor, batch_size, max_wait, grace
        self.queue: asyncio.Queue[Item] = asyncio.Queue(queue_size)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="bertlstm-predict")
        self.stats = {"requests": 0, "forward_passes": 0, "texts": 0}
        self.task: asyncio.Task[None] | None = None
        self.running: list[Item] = []  # the requests of the forward pass under way
        self.closing = False

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    def drain(self) -> None:
        """Shutting down: refuse new requests, stop waiting for company, answer the queued work while the
        grace period lasts, and at 80% of it refuse what is left (the last pass must end within it)."""
        if self.closing:
            return
        self.closing, self.max_wait = True, 0.0
        asyncio.get_running_loop().call_later(0.8 * self.grace, self.give_up)
        logger.info(f"shutting down: {self.queue.qsize()} queued request(s) answered within {self.grace:g}s")

    def give_up(self) -> None:
        """Refuse every request still waiting, or in the pass under way (its thread finishes unheard)."""
        left = list(self.running)
        while not self.queue.empty():
            left.append(self.queue.get_nowait())
            self.queue.task_done()
        for _, future in left:
            if not future.done():
                future.set_exception(ShuttingDown())
        if left:
            logger.warning(f"shutting down: {len(left)} request(s) not answered in time were refused (503)")

    async def stop(self) -> None:
        """After the last connection: refuse anything left and stop the worker (not waiting for its pass)."""
        self.give_up()
        if self.task is not None:
            self.task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def predict(self, texts: list[str]) -> list[Any]:
        """The answer for each of ``texts``, computed together with other requests' texts."""
        if self.closing:
            raise ShuttingDown
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait((texts, future))
        except asyncio.QueueFull:
            raise Overloaded from None
        self.stats["requests"] += 1
        return await future

    async def _next_batch(self) -> list[Item]:
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
        while True:
            self.running = await self._next_batch()
            try:
                await self._answer(self.running)
            finally:
                for _ in self.running:
                    self.queue.task_done()
                self.running = []

    async def _answer(self, batch: list[Item]) -> None:
        """One forward pass for the texts of ``batch``; a failed pass is made again request by request, so that
        one request's input fails that request alone, never the others' nor the server."""
        texts = [text for request, _ in batch for text in request]
        try:
            answers = await asyncio.get_running_loop().run_in_executor(self.executor, self.predictor.answer, texts)
        except Exception as err:
            if len(batch) > 1:
                for item in batch:
                    await self._answer([item])
                return
            logger.exception(f"forward pass over {len(texts)} texts failed")
            for _, future in batch:
                if not future.done():
                    future.set_exception(err)
            return
        self.stats["forward_passes"] += 1
        self.stats["texts"] += len(texts)
        start = 0
        for request, future in batch:
            if not future.done():  # its client may have gone, or shutdown refused it
                future.set_result(answers[start : start + len(request)])
            start += len(request)
