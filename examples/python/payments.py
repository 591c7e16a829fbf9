#!/usr/bin/env python3
"""payments.py - payments at-least-once, made safe by an idempotency key (PostgreSQL, psycopg).

The article's AtLeastOnceConsumer as a ballast exec handler, in the SDK's plain (sync) form.
ballast consumes `payments`, commits an offset only after this handler returned for it (and
for every earlier offset of its partition), retries what raised, and dead-letters what raised
PermanentError. So a payment can arrive twice (a producer retry, a crash between the insert
and the commit): the insert is keyed by the payment's idempotency key and a second arrival
changes nothing, in one atomic statement (the article's SELECT-then-INSERT lets two
deliveries both pass).

Environment: PG_DSN (a libpq connection string; without it, the libpq variables
PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD), PAYMENTS_TABLE (default payments).
Run with examples/python/payments.conf; the table is created if missing.
"""
import os
import re

import psycopg

from ballast_handler import PermanentError, log, run

TABLE = os.environ.get("PAYMENTS_TABLE", "payments")
if not re.fullmatch(r"[a-z_][a-z0-9_]*", TABLE):
    raise SystemExit("PAYMENTS_TABLE: not a plain name: %r" % TABLE)

_conn = None


def connection():
    """The database connection, (re)opened when needed: a lost connection raises, the
    payment is retried, and the retry connects again."""
    global _conn
    if _conn is None or _conn.closed:
        _conn = psycopg.connect(os.environ.get("PG_DSN", ""), autocommit=True)
        _conn.execute("""CREATE TABLE IF NOT EXISTS %s (
            idempotency_key TEXT PRIMARY KEY,
            customer_id     TEXT NOT NULL,
            amount          BIGINT NOT NULL,
            status          TEXT NOT NULL)""" % TABLE)
    return _conn


def parse_payment(msg):
    try:
        p = msg.json()
    except ValueError as err:
        # Retrying cannot make this JSON: to the dead-letter topic at once.
        raise PermanentError("payment is not JSON: %s" % err) from None
    if not (isinstance(p, dict) and isinstance(p.get("idempotencyKey"), str) and
            isinstance(p.get("customerId"), str) and isinstance(p.get("amount"), int)):
        raise PermanentError("payment lacks idempotencyKey, customerId or an integer amount")
    return p


def handle(msg):
    payment = parse_payment(msg)
    # A database error raises: ballast retries the payment with back-off.
    cur = connection().execute(
        "INSERT INTO %s (idempotency_key, customer_id, amount, status) "
        "VALUES (%%s, %%s, %%s, 'completed') ON CONFLICT (idempotency_key) DO NOTHING" % TABLE,
        (payment["idempotencyKey"], payment["customerId"], payment["amount"]))
    if cur.rowcount == 0:
        log.info("payment %s seen before: nothing to do", payment["idempotencyKey"])
    # Charging the card would go here, passing the idempotency key to the payment provider
    # so that it deduplicates a second charge the same way.


def close():
    if _conn is not None:
        _conn.close()


run(handle, on_shutdown=close)
