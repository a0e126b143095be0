"""Background workers that live exactly as long as the app (webhook delivery, OTA rollout)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

import anyio.to_thread
from fastapi import FastAPI


class Worker(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


def run_with_app(app: FastAPI, worker: Worker) -> None:
    """Start `worker` when the app starts and stop it (off the event loop) when it stops,
    around whatever lifespan the app already has."""
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with inner(a) as state:
            worker.start()
            try:
                yield state
            finally:
                await anyio.to_thread.run_sync(worker.stop)

    app.router.lifespan_context = lifespan
