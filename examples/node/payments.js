#!/usr/bin/env node
// payments.js - payments at-least-once, made safe by an idempotency key (PostgreSQL, `pg`).
//
// The article's AtLeastOnceConsumer as a ballast exec handler. ballast consumes `payments`,
// commits an offset only after this handler said ok for it (and for every earlier offset of
// its partition), retries what it says retry, and dead-letters what it says fail. So a
// payment can arrive twice (a producer retry, a crash between the insert and the commit):
// the insert is keyed by the payment's idempotency key and a second arrival changes nothing,
// in one atomic statement (the article's SELECT-then-INSERT lets two deliveries both pass).
//
// Environment: PG_DSN (a postgresql:// URL; without it, the libpq variables PGHOST, PGPORT,
// PGDATABASE, PGUSER, PGPASSWORD), PAYMENTS_TABLE (default payments).
// Run with examples/node/payments.conf; the table is created if missing.

import pg from 'pg';

import { handle, log, PermanentError } from '@ballast/handler';

const table = process.env.PAYMENTS_TABLE ?? 'payments';
if (!/^[a-z_][a-z0-9_]*$/.test(table)) throw new Error(`PAYMENTS_TABLE: not a plain name: ${table}`);

// As many connections as payments in flight at once (protocol version 2; 1 with version 1).
const MAX_INFLIGHT = 8;
const pool = new pg.Pool({ connectionString: process.env.PG_DSN, max: MAX_INFLIGHT });

let ready = null;
function createTable() {
  ready ??= pool.query(`CREATE TABLE IF NOT EXISTS ${table} (
      idempotency_key TEXT PRIMARY KEY,
      customer_id     TEXT NOT NULL,
      amount          BIGINT NOT NULL,
      status          TEXT NOT NULL)`).catch((err) => {
    ready = null; // try again with the next message
    throw err;
  });
  return ready;
}

function parsePayment(msg) {
  let p;
  try {
    p = msg.json();
  } catch (err) {
    // Retrying cannot make this JSON: to the dead-letter topic at once.
    throw new PermanentError(`payment is not JSON: ${err.message}`);
  }
  if (typeof p?.idempotencyKey !== 'string' || typeof p.customerId !== 'string' ||
      !Number.isInteger(p.amount)) {
    throw new PermanentError('payment lacks idempotencyKey, customerId or an integer amount');
  }
  return p;
}

handle(async (msg) => {
  const payment = parsePayment(msg);
  await createTable();
  // A database error throws: ballast retries the payment with back-off.
  const res = await pool.query(
    `INSERT INTO ${table} (idempotency_key, customer_id, amount, status)
     VALUES ($1, $2, $3, 'completed')
     ON CONFLICT (idempotency_key) DO NOTHING`,
    [payment.idempotencyKey, payment.customerId, payment.amount],
  );
  if (res.rowCount === 0) log.info(`payment ${payment.idempotencyKey} seen before: nothing to do`);
  // Charging the card would go here, passing the idempotency key to the payment provider
  // so that it deduplicates a second charge the same way.
}, { maxInflight: MAX_INFLIGHT, onShutdown: () => pool.end() });
