#!/usr/bin/env python3
"""orders.py - orders whose processing raises are retried, then dead-lettered.

The article's ConsumerWithDLQ as a ballast exec handler, in the SDK's asyncio form. Each order
is checked against the catalogue and, when good, emitted to `output.topic` (keyed by
customer) as this message's effect. An order for a SKU the catalogue does not have makes
process_order raise: ballast retries it in place with back-off (later orders of the same
customer wait, so order is kept), `retry.max.attempts` times in all, then writes it to
`dlq.topic` with the original key, value and headers, and the error text in
`x-error-message`. Nothing is re-published to `orders` itself, and the offset is committed
only once the dead letter is acknowledged. Raising PermanentError instead would skip the
retries.

Run with examples/python/orders.conf.
"""
import json

from ballast_handler import emit, run_async

# Stands in for an inventory service.
CATALOGUE = {"SKU-1": 1250, "SKU-2": 990, "SKU-3": 4500}


async def process_order(order, attempt):
    price = CATALOGUE.get(order["sku"])
    if price is None:
        raise LookupError("no such sku: %s (attempt %d)" % (order["sku"], attempt))
    return dict(order, total=price * order["qty"])


async def handle(msg):
    accepted = await process_order(msg.json(), msg.attempt)
    return emit({"key": msg.key, "value": json.dumps(accepted)})


run_async(handle)
