"""bench/exec_async/confluent.py - the confluent-kafka (Python) peer of the exec-async
scenario: a consumer group member that hands each message to an asyncio task per partition,
which awaits 10 ms per message, in order, and then stores its offset (enable.auto.offset.store
off, auto-commit on: at-least-once, as ballast). At the N-th message it writes the done marker;
on SIGTERM it commits and closes. Arguments: PEERS_DIR BOOTSTRAP TOPIC GROUP N MARKER."""
import asyncio
import signal
import sys
import time

sys.path.insert(0, sys.argv[1])
from confluent_kafka import Consumer  # noqa: E402

BOOTSTRAP, TOPIC, GROUP, EXPECT, MARKER = sys.argv[2:4] + [sys.argv[4], int(sys.argv[5]),
                                                         sys.argv[6]]


async def main():
    consumer = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": GROUP,
                         "auto.offset.reset": "earliest", "enable.auto.offset.store": False,
                         "queued.min.messages": 1000000})
    consumer.subscribe([TOPIC])
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    queues, count = {}, 0

    async def partition_worker(q):
        nonlocal count
        while True:
            msg = await q.get()
            await asyncio.sleep(0.010)
            consumer.store_offsets(message=msg)
            count += 1
            if count == EXPECT:
                with open(MARKER, "w") as f:
                    f.write(f"{count} {time.time_ns()} {time.monotonic_ns()}\n")

    tasks = []
    while not stop.is_set():
        msgs = consumer.consume(num_messages=500, timeout=0)
        if not msgs:
            await asyncio.sleep(0.005)
            continue
        for m in msgs:
            if m.error():
                continue
            q = queues.get(m.partition())
            if q is None:
                q = queues[m.partition()] = asyncio.Queue()
                tasks.append(asyncio.create_task(partition_worker(q)))
            q.put_nowait(m)
        await asyncio.sleep(0)
    for t in tasks:
        t.cancel()
    consumer.commit(asynchronous=False)
    consumer.close()


asyncio.run(main())
