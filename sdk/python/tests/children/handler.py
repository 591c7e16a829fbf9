"""A test child for test_child.py: `handler.py async|sync|batch`, doing what the header "do"
says: ok (default), gather:N (wait until N calls have run at once, up to 10 s), sleep:MS,
noise (writes to stdout behind the protocol's back: print, os.write, a subprocess), raise,
permanent. Each ok reply emits {"peak": most calls seen at once}."""
import asyncio
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src"))

import ballast_handler  # noqa: E402
from ballast_handler import PermanentError, emit, log  # noqa: E402

lock = threading.Lock()
state = {"running": 0, "peak": 0}


def enter():
    with lock:
        state["running"] += 1
        state["peak"] = max(state["peak"], state["running"])


def leave():
    with lock:
        state["running"] -= 1


def act(msg, wait):
    verb, _, arg = (msg.headers.get("do") or "ok").partition(":")
    if verb == "gather":
        deadline = time.monotonic() + 10
        while state["peak"] < int(arg):
            if time.monotonic() > deadline:
                raise PermanentError("the calls never ran together")
            yield wait(0.001)
    if verb == "sleep":
        yield wait(int(arg) / 1000)
    if verb == "noise":
        print("print noise")
        os.write(1, b"os.write noise\n")
        subprocess.run(["echo", "subprocess noise"], check=True)
    if verb == "raise":
        raise RuntimeError("boom")
    if verb == "permanent":
        raise PermanentError("no way")


def result():
    return emit({"value": json.dumps({"peak": state["peak"]})})


async def handle_async(msg):
    enter()
    try:
        for w in act(msg, asyncio.sleep):
            await w
        return result()
    finally:
        leave()


def handle_sync(msg):
    enter()
    try:
        for _ in act(msg, time.sleep):
            pass
        return result()
    finally:
        leave()


def shutdown():
    log.info("shutdown hook ran")


mode = sys.argv[1]
n = int(os.environ["MAX_INFLIGHT"]) if os.environ.get("MAX_INFLIGHT") else None
if mode == "async":
    ballast_handler.run_async(handle_async, max_inflight=n, on_shutdown=shutdown)
elif mode == "sync":
    ballast_handler.run(handle_sync, max_inflight=n, on_shutdown=shutdown)
else:
    ballast_handler.run_batch(lambda msgs: [handle_sync(m) for m in msgs], max_inflight=n,
                              on_shutdown=shutdown)
