// codec.js - the exec protocol's JSON lines: requests in, replies out (docs/exec-protocol.md).
//
// Pure functions, no I/O. Bytes travel as a JSON string when they are valid UTF-8 without
// NUL, and as base64 in a "<name>_b64" member otherwise; the handler sees text as a string
// and anything else as a Buffer, and may answer with either.

import { Buffer, isUtf8 } from 'node:buffer';

/** An error in what ballast sent: the child cannot go on (see serve.js). */
export class RequestError extends Error {}

/** An error in what the handler returned: the message is retried. */
export class ResultError extends Error {}

// A lone surrogate cannot be encoded as UTF-8, and NUL never travels as text.
const NOT_PLAIN_TEXT = /[\0\ud800-\udfff]/;

/** The message a handler receives. */
export class Message {
  constructor(fields) {
    Object.assign(this, fields);
  }

  /** The value parsed as JSON (a tombstone gives null). */
  json() {
    return this.value === null ? null : JSON.parse(this.value.toString());
  }
}

function bytesMember(obj, name, where) {
  const text = obj[name];
  const b64 = obj[`${name}_b64`];
  if (typeof b64 === 'string') return Buffer.from(b64, 'base64');
  if (typeof text === 'string') return text;
  if (text === null || text === undefined) return null;
  throw new RequestError(`${where}.${name} is not a string or null`);
}

function decodeHeaders(obj, where) {
  const headers = {};
  for (const [member, binary] of [['headers', false], ['headers_b64', true]]) {
    const h = obj[member];
    if (h === undefined || h === null) continue;
    if (typeof h !== 'object' || Array.isArray(h)) {
      throw new RequestError(`${where}.${member} is not an object`);
    }
    for (const [name, v] of Object.entries(h)) {
      if (v === null) headers[name] = null;
      else if (typeof v !== 'string') {
        throw new RequestError(`${where}.${member}.${name} is not a string or null`);
      } else headers[name] = binary ? Buffer.from(v, 'base64') : v;
    }
  }
  return headers;
}

function int(obj, name, where, nullable = false) {
  const v = obj[name];
  if (nullable && v === null) return null;
  if (!Number.isInteger(v)) throw new RequestError(`${where}.${name} is not an integer`);
  return v;
}

/** Decodes one message of a request (a message request, or a batch element). */
export function decodeMessage(obj, where = 'request') {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    throw new RequestError(`${where} is not an object`);
  }
  const headers = decodeHeaders(obj, where);
  const fields = {
    topic: typeof obj.topic === 'string' ? obj.topic : '',
    partition: int(obj, 'partition', where),
    offset: int(obj, 'offset', where),
    timestamp: int(obj, 'timestamp', where, true),
    attempt: int(obj, 'attempt', where),
    key: bytesMember(obj, 'key', where),
    value: bytesMember(obj, 'value', where),
    headers,
  };
  // The trace context ballast checked (a malformed header is not lifted),
  // or started for the message with tracing = on.
  if (typeof obj.traceparent === 'string') {
    fields.traceparent = obj.traceparent;
    if (typeof obj.tracestate === 'string') fields.tracestate = obj.tracestate;
  }
  return new Message(fields);
}

/**
 * Decodes a request line: { id, messages, batch } where batch tells a batch request
 * (several messages, one reply with results) from a message request.
 */
export function decodeRequest(line) {
  let obj;
  try {
    obj = JSON.parse(line);
  } catch (err) {
    throw new RequestError(`a request that is not JSON: ${err.message}`);
  }
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    throw new RequestError('a request that is not a JSON object');
  }
  const id = int(obj, 'id', 'request');
  if (Array.isArray(obj.batch)) {
    if (obj.batch.length === 0) throw new RequestError(`batch request ${id} is empty`);
    return { id, batch: true, messages: obj.batch.map((m, i) => decodeMessage(m, `batch[${i}]`)) };
  }
  return { id, batch: false, messages: [decodeMessage(obj)] };
}

/** Bytes as they travel: [member suffix, JSON value]; text stays text. */
function wireBytes(v, where) {
  if (typeof v === 'string') {
    if (!NOT_PLAIN_TEXT.test(v)) return ['', v];
    v = Buffer.from(v, 'utf8'); // lone surrogates become U+FFFD, as anywhere in Node
  } else if (v instanceof Uint8Array) {
    v = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  } else {
    throw new ResultError(`${where} is not a string, a Buffer or null`);
  }
  if (isUtf8(v) && !v.includes(0)) return ['', v.toString('utf8')];
  return ['_b64', v.toString('base64')];
}

function isName(s) {
  return typeof s === 'string' && s.length > 0 && !NOT_PLAIN_TEXT.test(s);
}

function encodeRecord(rec, where) {
  if (rec === null || typeof rec !== 'object') throw new ResultError(`${where} is not an object`);
  const out = {};
  if (rec.topic !== undefined && rec.topic !== null) {
    if (!isName(rec.topic)) throw new ResultError(`${where}.topic is not a non-empty string`);
    out.topic = rec.topic;
  }
  for (const name of ['key', 'value']) {
    const v = rec[name];
    if (v === undefined || v === null) continue;
    const [suffix, wire] = wireBytes(v, `${where}.${name}`);
    out[name + suffix] = wire;
  }
  if (rec.headers !== undefined && rec.headers !== null) {
    if (typeof rec.headers !== 'object') throw new ResultError(`${where}.headers is not an object`);
    const text = {};
    const binary = {};
    for (const [name, v] of Object.entries(rec.headers)) {
      if (!isName(name)) throw new ResultError(`${where}.headers: a header name that is not text`);
      if (v === null || v === undefined) {
        text[name] = null;
        continue;
      }
      const [suffix, wire] = wireBytes(v, `${where}.headers.${name}`);
      (suffix ? binary : text)[name] = wire;
    }
    if (Object.keys(text).length) out.headers = text;
    if (Object.keys(binary).length) out.headers_b64 = binary;
  }
  return out;
}

/** Text fit for an error member: no NUL (which JSON parsers refuse), no lone surrogate. */
export function errorText(err) {
  let s = err instanceof Error ? err.message || err.name : String(err);
  if (NOT_PLAIN_TEXT.test(s)) s = Buffer.from(s, 'utf8').toString('utf8').replace(/\0/g, '\ufffd');
  return s;
}

/**
 * The JSON object of one result: { status, error?, emit? }.
 * @param {{status: string, error?: string, emit?: object[]}} outcome a checked outcome
 */
export function encodeResult(outcome) {
  const out = { status: outcome.status };
  if (outcome.error !== undefined && outcome.error !== null) out.error = errorText(outcome.error);
  if (outcome.emit && outcome.emit.length) {
    out.emit = outcome.emit.map((rec, i) => encodeRecord(rec, `emit[${i}]`));
  }
  return out;
}

/**
 * A reply line (without its newline): to a batch request, its results in order; to a
 * message request, its one result.
 */
export function encodeReply(id, results, batch) {
  return JSON.stringify(batch ? { id, results } : { id, ...results[0] });
}

/** The hello line a version 2 child writes first. */
export function encodeHello(maxInflight, sdk) {
  return JSON.stringify({ hello: { protocol: 2, max_inflight: maxInflight, sdk } });
}
