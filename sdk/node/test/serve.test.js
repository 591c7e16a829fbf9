// serve.test.js - the protocol loop in-process: hello, concurrency up to the limit, replies
// by id, version 1's one-at-a-time order, batches, errors, and the end of input.

import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';

import { emit, fail, PermanentError, retry } from '../src/outcome.js';
import { checkMaxInflight, chooseProtocol, serve } from '../src/serve.js';

function request(id, extra = {}) {
  return {
    id, attempt: 1, topic: 't', partition: 0, offset: id, timestamp: null,
    key: `k${id}`, value: `v${id}`, headers: {}, ...extra,
  };
}

/** Runs serve() on a stream; `lines` collects what it writes, parsed. */
function start(handler, protocol, maxInflight = 4) {
  const input = new PassThrough();
  const lines = [];
  const waiters = [];
  const write = (line) => {
    assert.ok(!line.includes('\n'));
    lines.push(JSON.parse(line));
    for (const w of waiters.splice(0)) w();
  };
  const done = serve({ input, write, handler, protocol, maxInflight });
  const send = (obj) => input.write(`${JSON.stringify(obj)}\n`);
  // Resolves once `n` lines were written (the condition, not a sleep).
  const written = async (n) => {
    while (lines.length < n) await new Promise((r) => waiters.push(r));
  };
  return { input, lines, send, done, written };
}

/** A handler whose calls wait until released, counting how many run at once. */
function gated() {
  const g = { running: 0, peak: 0, started: [], release: new Map() };
  g.fn = async (msg) => {
    g.running++;
    g.peak = Math.max(g.peak, g.running);
    g.started.push(msg.offset);
    await new Promise((r) => g.release.set(msg.offset, r));
    g.running--;
    return emit({ value: msg.value });
  };
  g.whenStarted = async (n) => {
    while (g.started.length < n) await new Promise((r) => setImmediate(r));
  };
  return g;
}

test('version 2: a hello, then up to max_inflight at once, answered by id in any order', async () => {
  const g = gated();
  const s = start({ message: g.fn }, 2, 3);
  await s.written(1);
  assert.deepEqual(s.lines[0], { hello: { protocol: 2, max_inflight: 3, sdk: 'ballast-node/0.1.0' } });
  for (let id = 1; id <= 5; id++) s.send(request(id));
  await g.whenStarted(3);
  assert.deepEqual(g.started, [1, 2, 3]); // the fourth waits for a free slot
  g.release.get(3)();
  await s.written(2);
  assert.deepEqual(s.lines[1], { id: 3, status: 'ok', emit: [{ value: 'v3' }] });
  await g.whenStarted(4);
  for (const id of [1, 2, 4]) g.release.get(id)();
  await g.whenStarted(5);
  g.release.get(5)();
  s.input.end();
  await s.done;
  assert.equal(g.peak, 3);
  assert.deepEqual(s.lines.slice(1).map((l) => l.id).sort(), [1, 2, 3, 4, 5]);
});

test('version 1: no hello, one at a time, replies in order', async () => {
  const g = gated();
  const s = start({ message: g.fn }, 1, 64);
  for (let id = 1; id <= 3; id++) s.send(request(id));
  for (let id = 1; id <= 3; id++) {
    await g.whenStarted(id);
    assert.equal(g.running, 1);
    g.release.get(id)();
    await s.written(id);
  }
  s.input.end();
  await s.done;
  assert.deepEqual(s.lines.map((l) => l.id), [1, 2, 3]);
  assert.equal(g.peak, 1);
});

test('the end of input waits for the work in flight', async () => {
  const g = gated();
  const s = start({ message: g.fn }, 2, 8);
  s.send(request(1));
  s.send(request(2));
  await g.whenStarted(2);
  s.input.end();
  let finished = false;
  s.done.then(() => { finished = true; });
  await new Promise((r) => setImmediate(r));
  assert.equal(finished, false);
  g.release.get(2)();
  g.release.get(1)();
  await s.done;
  assert.deepEqual(s.lines.slice(1).map((l) => l.id).sort(), [1, 2]);
});

test('thrown errors: retry, or fail for a PermanentError; other values mean ok', async () => {
  const s = start({
    message: async (msg) => {
      if (msg.value === 'v1') throw new Error('database is down');
      if (msg.value === 'v2') throw new PermanentError('amount is negative');
      if (msg.value === 'v3') return { rows: [] }; // e.g. a query result
      if (msg.value === 'v4') return retry('later');
      if (msg.value === 'v5') return fail();
      return emit({ topic: '' }); // a bad record: retried, not sent
    },
  }, 2);
  for (let id = 1; id <= 6; id++) s.send(request(id));
  s.input.end();
  await s.done;
  const by = Object.fromEntries(s.lines.slice(1).map((l) => [l.id, l]));
  assert.deepEqual(by[1], { id: 1, status: 'retry', error: 'database is down' });
  assert.deepEqual(by[2], { id: 2, status: 'fail', error: 'amount is negative' });
  assert.deepEqual(by[3], { id: 3, status: 'ok' });
  assert.deepEqual(by[4], { id: 4, status: 'retry', error: 'later' });
  assert.deepEqual(by[5], { id: 5, status: 'fail' });
  assert.equal(by[6].status, 'retry');
  assert.match(by[6].error, /emit\[0\]\.topic is not a non-empty string/);
});

test('a batch request runs a message handler on each message in order', async () => {
  const seen = [];
  const s = start({
    message: async (msg) => {
      seen.push(msg.offset);
      await new Promise((r) => setImmediate(r));
      return msg.offset === 11 ? retry('x') : undefined;
    },
  }, 2);
  s.send({ id: 9, batch: [10, 11, 12].map((o) => ({ ...request(o), id: undefined })) });
  s.input.end();
  await s.done;
  assert.deepEqual(seen, [10, 11, 12]);
  assert.deepEqual(s.lines[1], {
    id: 9, results: [{ status: 'ok' }, { status: 'retry', error: 'x' }, { status: 'ok' }],
  });
});

test('a batch handler: per-message outcomes, one for all, a throw, a wrong count', async () => {
  const s = start({
    batch: async (msgs) => {
      if (msgs.length === 1) return undefined;
      if (msgs[0].offset === 20) return [undefined, fail('bad')];
      if (msgs[0].offset === 30) throw new Error('down');
      return [undefined];
    },
  }, 2);
  s.send(request(1)); // a message request: a batch of one
  s.send({ id: 2, batch: [request(20), request(21)] });
  s.send({ id: 3, batch: [request(30), request(31)] });
  s.send({ id: 4, batch: [request(40), request(41)] });
  s.input.end();
  await s.done;
  const by = Object.fromEntries(s.lines.slice(1).map((l) => [l.id, l]));
  assert.deepEqual(by[1], { id: 1, status: 'ok' });
  assert.deepEqual(by[2].results, [{ status: 'ok' }, { status: 'fail', error: 'bad' }]);
  assert.deepEqual(by[3].results, [{ status: 'retry', error: 'down' }, { status: 'retry', error: 'down' }]);
  assert.equal(by[4].results.length, 2);
  assert.match(by[4].results[1].error, /returned 1 outcomes for 2 messages/);
});

test('a request that cannot be decoded stops serving', async () => {
  const s = start({ message: async () => undefined }, 2);
  s.input.write('{"id":1,\n');
  await assert.rejects(s.done, /not JSON/);
});

test('the version: the option, else what ballast offers, else 1', () => {
  assert.equal(chooseProtocol(undefined, {}), 1);
  assert.equal(chooseProtocol(undefined, { BALLAST_EXEC_PROTOCOL: '1' }), 1);
  assert.equal(chooseProtocol(undefined, { BALLAST_EXEC_PROTOCOL: '2' }), 2);
  assert.equal(chooseProtocol(undefined, { BALLAST_EXEC_PROTOCOL: '3' }), 2);
  assert.equal(chooseProtocol(1, { BALLAST_EXEC_PROTOCOL: '2' }), 1);
  assert.throws(() => chooseProtocol(3, {}), /protocol must be 1 or 2/);
});

test('maxInflight must fit the hello: an integer from 1 to 2**31 - 1', () => {
  assert.equal(checkMaxInflight(undefined) >= 1, true);
  assert.equal(checkMaxInflight(2147483647), 2147483647);
  for (const bad of [0, -1, 1.5, 2147483648, 1e20, '8']) {
    assert.throws(() => checkMaxInflight(bad), TypeError);
  }
});
