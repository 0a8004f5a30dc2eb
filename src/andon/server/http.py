"""uvicorn serving the API and web UI on a background thread."""

from __future__ import annotations

import threading
import time

import uvicorn
from fastapi import FastAPI

__all__ = ["HttpServer"]


class HttpServer:
    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        self._server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
        )
        self._thread: threading.Thread | None = None
        self.address = f"http://{host}:{port}"

    def start(self, timeout: float = 15.0) -> None:
        self._thread = threading.Thread(target=self._server.run, name="andon-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        # uvicorn offers no event for "listening"; its flag is set once the socket is bound.
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the web server could not start on {self.address}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the web server did not start on {self.address}")
            time.sleep(0.02)

    def stop(self, timeout: float = 5.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
