// codec.test.js - what the shared vectors cannot say: bad requests, bad handler results,
// text that JSON parsers refuse, and the message helpers.

import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { test } from 'node:test';

import { decodeRequest, encodeResult, RequestError, ResultError } from '../src/codec.js';
import { emit, fail, ok, retry } from '../src/outcome.js';

const REQ = '{"id":3,"attempt":1,"topic":"t","partition":0,"offset":5,"timestamp":null,"key":null,"value":"{\\"a\\":1}","headers":{}}';

test('bad requests are refused with a reason', () => {
  for (const [line, why] of [
    ['not json', /not JSON/],
    ['[1]', /not a JSON object/],
    ['{"attempt":1}', /request.id is not an integer/],
    ['{"id":1,"batch":[]}', /batch request 1 is empty/],
    ['{"id":1,"batch":[1]}', /batch\[0\] is not an object/],
    ['{"id":1,"attempt":1,"topic":"t","partition":"0","offset":1,"timestamp":1}', /partition is not an integer/],
    ['{"id":1,"attempt":1,"topic":"t","partition":0,"offset":1,"timestamp":1,"value":5}', /value is not a string or null/],
    ['{"id":1,"attempt":1,"topic":"t","partition":0,"offset":1,"timestamp":1,"headers":[]}', /headers is not an object/],
  ]) {
    assert.throws(() => decodeRequest(line), (err) => err instanceof RequestError && why.test(err.message), line);
  }
});

test('json() parses the value, text or bytes', () => {
  const msg = decodeRequest(REQ).messages[0];
  assert.deepEqual(msg.json(), { a: 1 });
  const bin = decodeRequest(REQ.replace('"value":"{\\"a\\":1}"', `"value_b64":"${Buffer.from('[1,2]').toString('base64')}"`));
  assert.ok(Buffer.isBuffer(bin.messages[0].value));
  assert.deepEqual(bin.messages[0].json(), [1, 2]);
  assert.equal(decodeRequest(REQ.replace('"value":"{\\"a\\":1}"', '"value":null')).messages[0].json(), null);
  assert.equal(decodeRequest(REQ).messages[0].traceparent, undefined);
});

test('the trace context comes from the top level, not the headers', () => {
  const tp = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  const traced = decodeRequest(REQ.replace('"headers":{}', `"headers":{},"traceparent":"${tp}","tracestate":"a=1"`)).messages[0];
  assert.equal(traced.traceparent, tp);
  assert.equal(traced.tracestate, 'a=1');
  // A header ballast did not lift (it was malformed) stays only a header.
  const raw = decodeRequest(REQ.replace('"headers":{}', '"headers":{"traceparent":"junk","tracestate":"a=1"}')).messages[0];
  assert.equal(raw.traceparent, undefined);
  assert.equal(raw.tracestate, undefined);
  assert.equal(raw.headers.traceparent, 'junk');
});

test('error texts never hold what a JSON parser refuses', () => {
  const r = encodeResult(retry(new Error('a\0b \ud800 c')));
  assert.equal(r.error, 'a\ufffdb \ufffd c');
  assert.equal(encodeResult(fail('plain')).error, 'plain');
  assert.equal(encodeResult(retry()).error, undefined);
  assert.equal(encodeResult(fail(new TypeError(''))).error, 'TypeError');
});

test('emitted bytes: strings, Buffers and typed arrays', () => {
  const r = encodeResult(emit(
    { key: new Uint8Array([0xff, 0]), value: Buffer.from('ok') },
    { value: 'lone \ud800', headers: { h: new Uint8Array([104, 105]) } },
  ));
  assert.deepEqual(r.emit, [
    { key_b64: '/wA=', value: 'ok' },
    { value: 'lone \ufffd', headers: { h: 'hi' } },
  ]);
});

test('bad records are refused', () => {
  for (const [rec, why] of [
    [{ topic: '' }, /topic is not a non-empty string/],
    [{ topic: 5 }, /topic is not a non-empty string/],
    [{ value: 5 }, /value is not a string, a Buffer or null/],
    [{ headers: { 'a\0': 'x' } }, /header name that is not text/],
    [{ headers: { a: {} } }, /headers.a is not a string/],
    [null, /is not an object/],
  ]) {
    assert.throws(() => encodeResult(emit(rec)), (err) => err instanceof ResultError && why.test(err.message));
  }
  assert.deepEqual(encodeResult(ok()), { status: 'ok' });
});
