"""The child's side of the exec protocol: reads requests, runs the handler, writes replies.

Version 2 (docs/exec-protocol.md): a hello first, then up to max_inflight requests run at
once and each reply names its request's id, in whatever order they finish. Version 1: no
hello, one request at a time, replies in order. ballast never has two messages of one key
open at once, so running open requests concurrently keeps every order it promises; the
messages of one batch request run one after another, in their order.

When the input ends, the requests already read still run and are answered; serve() returns
once every reply has been written. A request it cannot decode is ballast's bug, not the
message's: serve() raises RequestError, and the caller exits so that ballast starts a fresh
child and sends the message again.
"""
from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, AsyncIterator, Awaitable, Callable, List, Mapping, Optional, Set, Union

from .codec import Message, Request, ResultError, decode_request, encode_hello, encode_reply, encode_result
from .outcome import Outcome, PermanentError, from_error, from_value, retry

SDK_NAME = "ballast-python/0.1.0"
DEFAULT_MAX_INFLIGHT = 64

log = logging.getLogger("ballast_handler")

MessageFn = Callable[[Message], Awaitable[Any]]
BatchFn = Callable[[List[Message]], Awaitable[Any]]


def choose_protocol(option: Optional[int], env: Mapping[str, str] = os.environ) -> int:
    """The option when given, else 2 when ballast offers it (BALLAST_EXEC_PROTOCOL >= 2 in
    the environment), else 1, which every ballast speaks."""
    if option is not None:
        if option not in (1, 2):
            raise ValueError("protocol must be 1 or 2, not %r" % (option,))
        return option
    try:
        return 2 if int(env.get("BALLAST_EXEC_PROTOCOL", "")) >= 2 else 1
    except ValueError:
        return 1


MAX_INFLIGHT_LIMIT = 2**31 - 1


def check_max_inflight(n: Optional[int], default: int = DEFAULT_MAX_INFLIGHT) -> int:
    if n is None:
        return default
    # The hello carries it as a JSON integer, which ballast reads as a signed 32-bit one
    # at most.
    if not isinstance(n, int) or isinstance(n, bool) or n < 1 or n > MAX_INFLIGHT_LIMIT:
        raise ValueError("max_inflight must be an integer from 1 to %d, not %r"
                         % (MAX_INFLIGHT_LIMIT, n))
    return n


def _where(msg: Message) -> str:
    return "%s[%d]@%d (attempt %d)" % (msg.topic, msg.partition, msg.offset, msg.attempt)


def _raised(err: Exception, what: str) -> Outcome:
    if isinstance(err, PermanentError):
        log.warning("%s failed permanently: %s", what, err)
    else:
        log.warning("%s raised (retried)", what, exc_info=err)
    return from_error(err)


async def _run_message(fn: MessageFn, msg: Message) -> Outcome:
    try:
        return from_value(await fn(msg))
    except Exception as err:  # a handler's failure is the message's outcome
        return _raised(err, "handler on %s" % _where(msg))


async def _run_batch(fn: BatchFn, msgs: List[Message]) -> List[Outcome]:
    try:
        v = await fn(msgs)
    except Exception as err:
        o = _raised(err, "batch handler on %d message(s) from %s" % (len(msgs), _where(msgs[0])))
        return [o] * len(msgs)
    if not isinstance(v, (list, tuple)) or isinstance(v, Outcome):
        return [from_value(v)] * len(msgs)
    if len(v) != len(msgs):
        text = "batch handler returned %d outcomes for %d messages" % (len(v), len(msgs))
        log.error(text)
        return [retry(text)] * len(msgs)
    return [from_value(x) for x in v]


def _result(outcome: Outcome, msg: Message) -> Mapping[str, Any]:
    """A result's JSON; a result that cannot be sent (a bad emit) is retried instead."""
    try:
        return encode_result(outcome)
    except ResultError as err:
        log.error("handler on %s returned %s", _where(msg), err)
        return encode_result(retry("handler returned %s" % err))


class Handler:
    """The user's function: one call per message, or one per batch."""

    def __init__(self, message: Optional[MessageFn] = None, batch: Optional[BatchFn] = None):
        self.message = message
        self.batch = batch

    async def answer(self, req: Request) -> str:
        if self.batch is not None:
            outcomes = await _run_batch(self.batch, req.messages)
        else:
            assert self.message is not None
            outcomes = [await _run_message(self.message, m) for m in req.messages]
        results = [_result(o, m) for o, m in zip(outcomes, req.messages)]
        return encode_reply(req.id, results, req.batch)  # type: ignore[arg-type]


async def serve(lines: AsyncIterator[Union[str, bytes]], write: Callable[[str], None],
                handler: Handler, protocol: int, max_inflight: int) -> None:
    """Serves request lines until they end; `write` writes one line (adding the newline)."""
    slots = asyncio.Semaphore(max_inflight if protocol == 2 else 1)
    running: Set["asyncio.Future[None]"] = set()
    failures: List[BaseException] = []

    async def one(req: Request) -> None:
        try:
            write(await handler.answer(req))
        except BaseException as err:  # a broken stdout: stop, and say why
            failures.append(err)
        finally:
            slots.release()

    if protocol == 2:
        write(encode_hello(max_inflight, SDK_NAME))
    async for line in lines:
        req = decode_request(line)
        await slots.acquire()
        if failures:
            break
        task = asyncio.ensure_future(one(req))
        running.add(task)
        task.add_done_callback(running.discard)
    if running:
        await asyncio.gather(*running)
    if failures:
        raise failures[0]
