"""The protocol loop in-process: hello, concurrency up to the limit, replies by id, version 1's
one-at-a-time order, batches, errors, and the end of input."""
import asyncio
import json

import pytest

from ballast_handler import PermanentError, emit, fail, retry
from ballast_handler.codec import RequestError
from ballast_handler.serve import Handler, check_max_inflight, choose_protocol, serve


def request(i, **extra):
    r = {"id": i, "attempt": 1, "topic": "t", "partition": 0, "offset": i, "timestamp": None,
         "key": "k%d" % i, "value": "v%d" % i, "headers": {}}
    r.update(extra)
    return r


class Session:
    """serve() fed from a queue; `lines` collects what it writes, parsed."""

    def __init__(self, handler, protocol, max_inflight=4):
        self.queue = asyncio.Queue()
        self.lines = []
        self.written_event = asyncio.Event()
        self.task = asyncio.ensure_future(serve(self._source(), self._write, handler, protocol,
                                                max_inflight))

    async def _source(self):
        while True:
            line = await self.queue.get()
            if line is None:
                return
            yield line

    def _write(self, line):
        assert "\n" not in line
        self.lines.append(json.loads(line))
        self.written_event.set()

    def send(self, obj):
        self.queue.put_nowait(json.dumps(obj))

    def end(self):
        self.queue.put_nowait(None)

    async def written(self, n):
        while len(self.lines) < n:
            self.written_event.clear()
            await self.written_event.wait()


class Gate:
    """A handler whose calls wait until released, counting how many run at once."""

    def __init__(self):
        self.running = self.peak = 0
        self.started = []
        self.release = {}

    async def __call__(self, msg):
        self.running += 1
        self.peak = max(self.peak, self.running)
        self.started.append(msg.offset)
        ev = self.release[msg.offset] = asyncio.Event()
        await ev.wait()
        self.running -= 1
        return emit({"value": msg.value})

    async def started_count(self, n):
        while len(self.started) < n:
            await asyncio.sleep(0)


def by_id(lines):
    out = {}
    for line in lines:
        assert line["id"] not in out, "answered twice"
        out[line["id"]] = line
    return out


def test_version2_hello_then_up_to_the_limit_answered_by_id():
    async def main():
        g = Gate()
        s = Session(Handler(message=g), 2, 3)
        await s.written(1)
        assert s.lines[0] == {"hello": {"protocol": 2, "max_inflight": 3,
                                        "sdk": "ballast-python/0.1.0"}}
        for i in range(1, 6):
            s.send(request(i))
        await g.started_count(3)
        for _ in range(10):
            await asyncio.sleep(0)
        assert g.started == [1, 2, 3]  # the fourth waits for a free slot
        g.release[3].set()
        await s.written(2)
        assert s.lines[1] == {"id": 3, "status": "ok", "emit": [{"value": "v3"}]}
        await g.started_count(4)
        for i in (1, 2, 4):
            g.release[i].set()
        await g.started_count(5)
        g.release[5].set()
        s.end()
        await s.task
        assert g.peak == 3
        assert sorted(by_id(s.lines[1:])) == [1, 2, 3, 4, 5]
    asyncio.run(main())


def test_version1_no_hello_one_at_a_time_in_order():
    async def main():
        g = Gate()
        s = Session(Handler(message=g), 1, 64)
        for i in (1, 2, 3):
            s.send(request(i))
        for i in (1, 2, 3):
            await g.started_count(i)
            assert g.running == 1
            g.release[i].set()
            await s.written(i)
        s.end()
        await s.task
        assert [line["id"] for line in s.lines] == [1, 2, 3]
        assert g.peak == 1
    asyncio.run(main())


def test_end_of_input_waits_for_the_work_in_flight():
    async def main():
        g = Gate()
        s = Session(Handler(message=g), 2, 8)
        s.send(request(1))
        s.send(request(2))
        await g.started_count(2)
        s.end()
        for _ in range(10):
            await asyncio.sleep(0)
        assert not s.task.done()
        g.release[2].set()
        g.release[1].set()
        await s.task
        assert sorted(by_id(s.lines[1:])) == [1, 2]
    asyncio.run(main())


def test_raised_errors_and_return_values():
    async def handler(msg):
        if msg.value == "v1":
            raise ConnectionError("database is down")
        if msg.value == "v2":
            raise PermanentError("amount is negative")
        if msg.value == "v3":
            return {"rows": []}  # anything that is not an outcome: ok
        if msg.value == "v4":
            return retry("later")
        if msg.value == "v5":
            return fail()
        return emit({"topic": ""})  # a bad record: retried, not sent

    async def main():
        s = Session(Handler(message=handler), 2)
        for i in range(1, 7):
            s.send(request(i))
        s.end()
        await s.task
        return by_id(s.lines[1:])
    got = asyncio.run(main())
    assert got[1] == {"id": 1, "status": "retry", "error": "database is down"}
    assert got[2] == {"id": 2, "status": "fail", "error": "amount is negative"}
    assert got[3] == {"id": 3, "status": "ok"}
    assert got[4] == {"id": 4, "status": "retry", "error": "later"}
    assert got[5] == {"id": 5, "status": "fail"}
    assert got[6]["status"] == "retry"
    assert "emit[0].topic is not a non-empty string" in got[6]["error"]


def test_batch_request_runs_a_message_handler_in_order():
    seen = []

    async def handler(msg):
        seen.append(msg.offset)
        await asyncio.sleep(0)
        return retry("x") if msg.offset == 11 else None

    async def main():
        s = Session(Handler(message=handler), 2)
        batch = [request(o) for o in (10, 11, 12)]
        for m in batch:
            del m["id"]
        s.send({"id": 9, "batch": batch})
        s.end()
        await s.task
        return s.lines
    lines = asyncio.run(main())
    assert seen == [10, 11, 12]
    assert lines[1] == {"id": 9, "results": [{"status": "ok"}, {"status": "retry", "error": "x"},
                                             {"status": "ok"}]}


def test_batch_handler_outcomes():
    async def handler(msgs):
        if len(msgs) == 1:
            return None
        if msgs[0].offset == 20:
            return [None, fail("bad")]
        if msgs[0].offset == 30:
            raise RuntimeError("down")
        return [None]

    async def main():
        s = Session(Handler(batch=handler), 2)
        s.send(request(1))  # a message request: a batch of one
        for i, first in ((2, 20), (3, 30), (4, 40)):
            s.send({"id": i, "batch": [request(first), request(first + 1)]})
        s.end()
        await s.task
        return by_id(s.lines[1:])
    got = asyncio.run(main())
    assert got[1] == {"id": 1, "status": "ok"}
    assert got[2]["results"] == [{"status": "ok"}, {"status": "fail", "error": "bad"}]
    assert got[3]["results"] == [{"status": "retry", "error": "down"}] * 2
    assert "returned 1 outcomes for 2 messages" in got[4]["results"][1]["error"]


def test_undecodable_request_stops_serving():
    async def main():
        s = Session(Handler(message=Gate()), 2)
        s.queue.put_nowait('{"id":1,')
        await s.task
    with pytest.raises(RequestError, match="not JSON"):
        asyncio.run(main())


def test_protocol_choice():
    assert choose_protocol(None, {}) == 1
    assert choose_protocol(None, {"BALLAST_EXEC_PROTOCOL": "1"}) == 1
    assert choose_protocol(None, {"BALLAST_EXEC_PROTOCOL": "2"}) == 2
    assert choose_protocol(None, {"BALLAST_EXEC_PROTOCOL": "3"}) == 2
    assert choose_protocol(None, {"BALLAST_EXEC_PROTOCOL": "x"}) == 1
    assert choose_protocol(1, {"BALLAST_EXEC_PROTOCOL": "2"}) == 1
    with pytest.raises(ValueError):
        choose_protocol(3, {})


def test_max_inflight_must_fit_the_hello():
    """The hello carries max_inflight as a JSON integer ballast reads as 32-bit."""
    assert check_max_inflight(2**31 - 1) == 2**31 - 1
    for bad in (0, -1, 2**31, 2**64, True, 1.5, "8"):
        with pytest.raises(ValueError):
            check_max_inflight(bad)
