"""A simulated ballast: spawns a handler child (children/handler.py) the way ballast does,
writes requests on its stdin and checks what comes back on stdout: the hello, every id
answered exactly once, concurrency, stdout kept clean, the exit."""
import json
import os
import pathlib
import subprocess
import sys
import threading

import pytest

CHILD = pathlib.Path(__file__).resolve().parent / "children" / "handler.py"


def request(i, action="ok"):
    return {"id": i, "attempt": 1, "topic": "t", "partition": 0, "offset": i,
            "timestamp": 1700000000000, "key": "k%d" % i, "value": "v",
            "headers": {"do": action}}


class Child:
    def __init__(self, mode, **env):
        e = dict(os.environ, BALLAST_EXEC_PROTOCOL="")
        e.update(env)
        self.proc = subprocess.Popen([sys.executable, str(CHILD), mode], env=e,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.lines = []
        self.cond = threading.Condition()
        self.stderr = b""
        threading.Thread(target=self._read, daemon=True).start()
        self.err_reader = threading.Thread(target=self._read_err, daemon=True)
        self.err_reader.start()

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.decode())
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def _read_err(self):
        self.stderr = self.proc.stderr.read()

    def send(self, obj):
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())
        self.proc.stdin.flush()

    def written(self, n, timeout=30):
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.lines) >= n or self.proc.poll() is not None,
                                    timeout)
        assert ok and len(self.lines) >= n, "%d lines, child status %s" % (
            len(self.lines), self.proc.poll())

    def close(self, timeout=30):
        self.proc.stdin.close()
        status = self.proc.wait(timeout)
        self.proc.stdout.close()
        return status

    def err_text(self):
        self.proc.wait(30)
        self.err_reader.join(30)  # it reads to the end of the child's stderr
        return self.stderr.decode()


def replies(lines):
    by = {}
    for line in lines:
        r = json.loads(line)  # a stray line would fail here
        assert r["id"] not in by, "id %d answered twice" % r["id"]
        by[r["id"]] = r
    return by


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_version2_hello_concurrency_clean_stdout_and_exit(mode):
    c = Child(mode, BALLAST_EXEC_PROTOCOL="2", MAX_INFLIGHT="8")
    c.written(1)
    assert json.loads(c.lines[0]) == {"hello": {"protocol": 2, "max_inflight": 8,
                                                "sdk": "ballast-python/0.1.0"}}
    for i in range(1, 9):
        c.send(request(i, "gather:8"))
    c.send(request(9, "noise"))
    c.send(request(10, "raise"))
    c.send(request(11, "permanent"))
    c.written(12)
    assert c.close() == 0
    by = replies(c.lines[1:])
    assert sorted(by) == list(range(1, 12))
    for i in range(1, 9):
        assert by[i]["status"] == "ok", by[i]
        assert json.loads(by[i]["emit"][0]["value"])["peak"] >= 8
    assert by[10] == {"id": 10, "status": "retry", "error": "boom"}
    assert by[11] == {"id": 11, "status": "fail", "error": "no way"}
    err = c.err_text()
    for noise in ("print noise", "os.write noise", "subprocess noise", "shutdown hook ran"):
        assert noise in err, err


@pytest.mark.parametrize("mode", ["async", "sync", "batch"])
def test_version1_no_hello_one_at_a_time_in_order(mode):
    c = Child(mode, MAX_INFLIGHT="4")
    for i in range(1, 5):
        c.send(request(i, "sleep:30" if i == 2 else "ok"))
    c.written(4)
    assert c.close() == 0
    got = [json.loads(line) for line in c.lines]
    assert [r["id"] for r in got] == [1, 2, 3, 4]
    for r in got:
        assert json.loads(r["emit"][0]["value"])["peak"] == 1


def test_stdin_closing_with_calls_in_flight():
    c = Child("async", BALLAST_EXEC_PROTOCOL="2")
    for i in (1, 2, 3):
        c.send(request(i, "sleep:200"))
    assert c.close() == 0
    assert sorted(replies(c.lines[1:])) == [1, 2, 3]


def test_undecodable_request_exits_1():
    c = Child("async", BALLAST_EXEC_PROTOCOL="2")
    c.proc.stdin.write(b"this is not a request\n")
    c.proc.stdin.flush()
    assert c.close() == 1
    assert "a request that is not JSON" in c.err_text()
    assert len(c.lines) == 1  # the hello only
