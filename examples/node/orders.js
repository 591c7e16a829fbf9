#!/usr/bin/env node
// orders.js - orders whose processing throws are retried, then dead-lettered.
//
// The article's ConsumerWithDLQ as a ballast exec handler. Each order is checked against the
// catalogue and, when good, emitted to `output.topic` (keyed by customer) as this message's
// effect. An order for a SKU the catalogue does not have makes processOrder throw: ballast
// retries it in place with back-off (later orders of the same customer wait, so order is
// kept), `retry.max.attempts` times in all, then writes it to `dlq.topic` with the original
// key, value and headers, and the error text in `x-error-message`. Nothing is re-published to
// `orders` itself, and the offset is committed only once the dead letter is acknowledged.
// Throwing PermanentError instead would skip the retries.
//
// Run with examples/node/orders.conf.

import { emit, handle } from '@ballast/handler';

// Stands in for an inventory service.
const catalogue = new Map([['SKU-1', 1250], ['SKU-2', 990], ['SKU-3', 4500]]);

async function processOrder(order, attempt) {
  const price = catalogue.get(order.sku);
  if (price === undefined) throw new Error(`no such sku: ${order.sku} (attempt ${attempt})`);
  return { ...order, total: price * order.qty };
}

handle(async (msg) => {
  const accepted = await processOrder(msg.json(), msg.attempt);
  return emit({ key: msg.key, value: JSON.stringify(accepted) });
});
