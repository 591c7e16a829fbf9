"""ballast_handler: write a ballast exec handler as one function, sync or asyncio.

    from ballast_handler import run_async, retry, PermanentError

    async def handle(msg):
        ...

    run_async(handle)

run()/run_async() make this process a ballast exec child: they take stdout for the
protocol (anything else written there, print() included, goes to stderr), speak version 2
when ballast offers it, call the function for each message, and return once stdin closes
and the work in flight has been answered. README.md has the whole story.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import os
import sys
import threading
from typing import Any, AsyncIterator, Awaitable, Callable, List, Optional

from .codec import Message, RequestError
from .outcome import Outcome, PermanentError, Record, emit, fail, ok, retry
from .serve import DEFAULT_MAX_INFLIGHT, Handler, check_max_inflight, choose_protocol, log, serve

__all__ = ["run", "run_async", "run_batch", "run_batch_async", "ok", "retry", "fail", "emit",
           "PermanentError", "Message", "Record", "Outcome", "log", "DEFAULT_MAX_INFLIGHT"]
__version__ = "0.1.0"

Shutdown = Optional[Callable[[], Any]]


def _setup_log() -> None:
    if log.handlers:
        return
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(logging.Formatter("handler[%(process)d] %(levelname)s: %(message)s"))
    log.addHandler(h)
    log.setLevel(logging.DEBUG if os.environ.get("BALLAST_HANDLER_DEBUG") else logging.INFO)
    log.propagate = False


def _take_stdout() -> Callable[[str], None]:
    """Takes file descriptor 1 for the protocol: the protocol writes to a private copy of it,
    and fd 1 itself now points at stderr, so print(), logging set up for stdout, C
    extensions and subprocesses that inherit stdout all land on stderr instead of in the
    middle of a reply."""
    sys.stdout.flush()
    fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def write(line: str) -> None:
        data = (line + "\n").encode("utf-8")
        while data:
            n = os.write(fd, data)
            data = data[n:]
    return write


async def _stdin_lines() -> AsyncIterator[bytes]:
    """Lines of stdin, read on a thread (which works for pipes, files and terminals alike)."""
    loop = asyncio.get_running_loop()
    queue: "asyncio.Queue[Optional[bytes]]" = asyncio.Queue()

    def reader() -> None:
        for line in iter(sys.stdin.buffer.readline, b""):
            loop.call_soon_threadsafe(queue.put_nowait, line)
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=reader, name="ballast-stdin", daemon=True).start()
    while True:
        line = await queue.get()
        if line is None:
            return
        yield line


async def _main(handler: Handler, protocol: Optional[int], max_inflight: int,
                on_shutdown: Shutdown) -> int:
    status = 0
    try:
        await serve(_stdin_lines(), _take_stdout(), handler, choose_protocol(protocol),
                    max_inflight)
    except RequestError as err:
        log.error("%s; exiting so that ballast starts a fresh child", err)
        status = 1
    except OSError as err:  # stdout gone: ballast is not waiting any more
        log.error("stdout: %s; exiting", err)
        status = 1
    if on_shutdown is not None:
        try:
            r = on_shutdown()
            if inspect.isawaitable(r):
                await r
        except Exception:
            log.exception("on_shutdown")
            status = 1
    return status


def _start(handler: Handler, protocol: Optional[int], max_inflight: int,
           on_shutdown: Shutdown) -> None:
    _setup_log()
    status = asyncio.run(_main(handler, protocol, max_inflight, on_shutdown))
    if status:
        raise SystemExit(status)


def _threaded(fn: Callable[[Any], Any], workers: int) -> Callable[[Any], Awaitable[Any]]:
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers,
                                                 thread_name_prefix="ballast-handler")

    async def call(arg: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, arg)
    return call


def run_async(fn: Callable[[Message], Awaitable[Any]], *, max_inflight: Optional[int] = None,
              protocol: Optional[int] = None, on_shutdown: Shutdown = None) -> None:
    """Serves ballast with ``await fn(msg)`` per message until stdin closes.

    Up to ``max_inflight`` (default 64) calls run at once, as asyncio tasks, when ballast
    speaks protocol version 2. Returns once every message read has been answered (and
    ``on_shutdown``, sync or async, has run); raises SystemExit(1) when ballast's requests
    cannot be read.
    """
    _start(Handler(message=fn), protocol, check_max_inflight(max_inflight), on_shutdown)


def run(fn: Callable[[Message], Any], *, max_inflight: Optional[int] = None,
        protocol: Optional[int] = None, on_shutdown: Shutdown = None) -> None:
    """As run_async() for a plain function. Calls run on a pool of ``max_inflight`` threads
    (default 1: one at a time, so a handler need not be thread-safe)."""
    n = check_max_inflight(max_inflight, default=1)
    _start(Handler(message=_threaded(fn, n)), protocol, n, on_shutdown)


def run_batch_async(fn: Callable[[List[Message]], Awaitable[Any]], *,
                    max_inflight: Optional[int] = None, protocol: Optional[int] = None,
                    on_shutdown: Shutdown = None) -> None:
    """As run_async(), with one call per batch (``processing = batch``). The function returns
    one outcome for the whole batch, or a list of one per message, in order."""
    _start(Handler(batch=fn), protocol, check_max_inflight(max_inflight), on_shutdown)


def run_batch(fn: Callable[[List[Message]], Any], *, max_inflight: Optional[int] = None,
              protocol: Optional[int] = None, on_shutdown: Shutdown = None) -> None:
    """As run_batch_async() for a plain function, on ``max_inflight`` threads (default 1)."""
    n = check_max_inflight(max_inflight, default=1)
    _start(Handler(batch=_threaded(fn, n)), protocol, n, on_shutdown)
