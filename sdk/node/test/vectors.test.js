// vectors.test.js - the codec against the shared test vectors (sdk/vectors), which ballast's
// own codec and the Python SDK check too.

import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { decodeRequest, encodeReply, encodeResult } from '../src/codec.js';
import { emit, fail, ok, retry } from '../src/outcome.js';

const VECTORS_VERSION = 1;

function load(name) {
  const doc = JSON.parse(readFileSync(new URL(`../../vectors/${name}`, import.meta.url), 'utf8'));
  assert.equal(doc.vectors_version, VECTORS_VERSION, `${name}: a vector format this test does not know`);
  assert.equal(doc.protocol, 2);
  assert.ok(doc.vectors.length > 0);
  return doc.vectors;
}

/** A vector's bytes: null, a string (its UTF-8 bytes) or {b64}. */
function bytes(spec) {
  if (spec === null || spec === undefined) return null;
  return typeof spec === 'string' ? Buffer.from(spec, 'utf8') : Buffer.from(spec.b64, 'base64');
}

/** As the handler would give them: a string stays a string, {b64} becomes a Buffer. */
function handlerBytes(spec) {
  return spec === null || spec === undefined || typeof spec === 'string' ? spec : bytes(spec);
}

function assertBytes(got, spec, textOnWire, what) {
  if (spec === null) {
    assert.equal(got, null, what);
    return;
  }
  assert.equal(typeof got === 'string', textOnWire, `${what}: text exactly when it travels as text`);
  assert.deepEqual(Buffer.from(got), bytes(spec), what);
}

function checkMessage(got, spec, wire, name) {
  for (const f of ['topic', 'partition', 'offset', 'timestamp', 'attempt']) {
    assert.equal(got[f], spec[f], `${name}: ${f}`);
  }
  assertBytes(got.key, spec.key, 'key' in wire, `${name}: key`);
  assertBytes(got.value, spec.value, 'value' in wire, `${name}: value`);
  const want = new Map(spec.headers); // the last of a name wins
  assert.deepEqual(Object.keys(got.headers).sort(), [...want.keys()].sort(), `${name}: header names`);
  for (const [h, v] of want) {
    assertBytes(got.headers[h], v, h in wire.headers, `${name}: header ${h}`);
  }
  // The checked context travels at the top level, never lifted from the headers.
  assert.equal(got.traceparent, wire.traceparent, `${name}: traceparent`);
  assert.equal(got.tracestate, wire.traceparent ? wire.tracestate : undefined, `${name}: tracestate`);
}

test('requests decode to the vectors messages', () => {
  for (const v of load('requests.json')) {
    const req = decodeRequest(JSON.stringify(v.request));
    const specs = v.messages ?? [v.message];
    const wires = v.request.batch ?? [v.request];
    assert.equal(req.id, v.id, v.name);
    assert.equal(req.batch, 'messages' in v, `${v.name}: batch`);
    assert.equal(req.messages.length, specs.length, v.name);
    specs.forEach((spec, i) => checkMessage(req.messages[i], spec, wires[i], v.name));
  }
});

function outcomeOf(result) {
  const records = (result.emit ?? []).map((r) => ({
    topic: r.topic,
    key: handlerBytes(r.key),
    value: handlerBytes(r.value),
    headers: r.headers && Object.fromEntries(r.headers.map(([n, b]) => [n, handlerBytes(b)])),
  }));
  switch (result.status) {
    case 'ok':
      return records.length ? emit(...records) : ok();
    case 'retry':
      return retry(result.error ?? undefined);
    case 'fail':
      return fail(result.error ?? undefined);
    default:
      throw new Error(`a vector with status ${result.status}`);
  }
}

test('results encode to the vectors reply lines', () => {
  for (const v of load('replies.json')) {
    const results = (v.results ?? [v.result]).map((r) => encodeResult(outcomeOf(r)));
    const line = encodeReply(v.id, results, 'results' in v);
    assert.ok(!line.includes('\n'), `${v.name}: one line`);
    assert.deepEqual(JSON.parse(line), v.reply, v.name);
  }
});
