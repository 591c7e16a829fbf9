// child.test.js - a simulated ballast: spawns a handler child (fixtures/handler.js) the way
// ballast does, writes requests on its stdin and checks what comes back on stdout: the
// hello, every id answered exactly once, concurrency, stdout kept clean, the exit.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import readline from 'node:readline';
import { test } from 'node:test';

const CHILD = new URL('../fixtures/handler.js', import.meta.url).pathname;

function request(id, action = 'ok') {
  return {
    id, attempt: 1, topic: 't', partition: 0, offset: id, timestamp: 1700000000000,
    key: `k${id}`, value: 'v', headers: { do: action },
  };
}

/** Starts the child; `lines` fills with its stdout lines, `stderr` with its stderr. */
function spawnChild(env) {
  const child = spawn(process.execPath, [CHILD], {
    env: { ...process.env, BALLAST_EXEC_PROTOCOL: '', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const c = { child, lines: [], stderr: '', waiters: [] };
  readline.createInterface({ input: child.stdout }).on('line', (l) => {
    c.lines.push(l);
    for (const w of c.waiters.splice(0)) w();
  });
  child.stderr.on('data', (d) => { c.stderr += d; });
  c.exited = new Promise((r) => child.on('exit', (code) => r(code)));
  c.send = (obj) => child.stdin.write(`${JSON.stringify(obj)}\n`);
  c.written = async (n) => {
    while (c.lines.length < n) {
      await Promise.race([new Promise((r) => c.waiters.push(r)), c.exited]);
      if (child.exitCode !== null && c.lines.length < n) {
        throw new Error(`the child exited (${child.exitCode}) after ${c.lines.length} lines: ${c.stderr}`);
      }
    }
  };
  return c;
}

/** The replies: each stdout line parsed, each id exactly once. */
function replies(lines) {
  const by = new Map();
  for (const l of lines) {
    const r = JSON.parse(l); // a stray line would throw here
    assert.ok(!by.has(r.id), `id ${r.id} answered twice`);
    by.set(r.id, r);
  }
  return by;
}

test('version 2: hello first, calls run together, stdout stays the protocol, clean exit', async () => {
  const c = spawnChild({ BALLAST_EXEC_PROTOCOL: '2', MAX_INFLIGHT: '8' });
  await c.written(1);
  const hello = JSON.parse(c.lines[0]);
  assert.deepEqual(hello, { hello: { protocol: 2, max_inflight: 8, sdk: 'ballast-node/0.1.0' } });
  for (let id = 1; id <= 8; id++) c.send(request(id, 'gather:8'));
  c.send(request(9, 'noise'));
  c.send(request(10, 'throw'));
  c.send(request(11, 'permanent'));
  await c.written(12);
  c.child.stdin.end();
  assert.equal(await c.exited, 0);
  const by = replies(c.lines.slice(1));
  assert.deepEqual([...by.keys()].sort((a, b) => a - b), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
  for (let id = 1; id <= 8; id++) {
    assert.equal(by.get(id).status, 'ok', JSON.stringify(by.get(id)));
    assert.ok(JSON.parse(by.get(id).emit[0].value).peak >= 8);
  }
  assert.deepEqual(by.get(10), { id: 10, status: 'retry', error: 'boom' });
  assert.deepEqual(by.get(11), { id: 11, status: 'fail', error: 'no way' });
  for (const noise of ['console.log noise', 'console.info noise', 'raw write noise', 'shutdown hook ran']) {
    assert.ok(c.stderr.includes(noise), `stderr lacks '${noise}': ${c.stderr}`);
  }
});

test('version 1 (ballast offers nothing): no hello, one at a time, in order', async () => {
  const c = spawnChild({});
  for (let id = 1; id <= 4; id++) c.send(request(id, id === 2 ? 'sleep:30' : 'ok'));
  await c.written(4);
  c.child.stdin.end();
  assert.equal(await c.exited, 0);
  const got = c.lines.map((l) => JSON.parse(l));
  assert.deepEqual(got.map((r) => r.id), [1, 2, 3, 4]);
  for (const r of got) assert.equal(JSON.parse(r.emit[0].value).peak, 1);
});

test('stdin closing with calls in flight: they are answered, then exit 0', async () => {
  const c = spawnChild({ BALLAST_EXEC_PROTOCOL: '2' });
  for (let id = 1; id <= 3; id++) c.send(request(id, 'sleep:200'));
  c.child.stdin.end();
  assert.equal(await c.exited, 0);
  const by = replies(c.lines.slice(1));
  assert.deepEqual([...by.keys()].sort(), [1, 2, 3]);
});

test('a request that is not JSON: one error line, exit 1', async () => {
  const c = spawnChild({ BALLAST_EXEC_PROTOCOL: '2' });
  c.child.stdin.write('this is not a request\n');
  assert.equal(await c.exited, 1);
  assert.match(c.stderr, /a request that is not JSON/);
  assert.deepEqual(c.lines.length, 1); // the hello only
});
