"""bench/exec_async/handler.py - the exec-async scenario's handler on the Python SDK (asyncio):
awaits 10 ms per message and, at the N-th message, writes the done marker
"<count> <realtime ns> <monotonic ns>". Arguments: SDK_SRC N MARKER [MAX_INFLIGHT]."""
import asyncio
import sys
import time

sys.path.insert(0, sys.argv[1])
from ballast_handler import run_async  # noqa: E402

EXPECT, MARKER = int(sys.argv[2]), sys.argv[3]
INFLIGHT = int(sys.argv[4]) if len(sys.argv) > 4 else 64
count = 0


async def handle(msg):
    global count
    await asyncio.sleep(0.010)
    count += 1
    if count == EXPECT:
        with open(MARKER, "w") as f:
            f.write(f"{count} {time.time_ns()} {time.monotonic_ns()}\n")


run_async(handle, max_inflight=INFLIGHT)
