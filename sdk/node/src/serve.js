// serve.js - the child's side of the exec protocol: reads requests, runs the handler, writes replies.
//
// Version 2 (docs/exec-protocol.md): a hello first, then up to maxInflight requests run at
// once and each reply names its request's id, in whatever order they finish. Version 1: no
// hello, one request at a time, replies in order. ballast never has two messages of one key
// open at once, so running open requests concurrently keeps every order it promises; the
// messages of one batch request run one after another, in their order.
//
// When stdin ends, the requests already read still run and are answered; serve() resolves
// once every reply has been written. A request it cannot decode is ballast's bug, not the
// message's: serve() rejects, and the caller exits, so that ballast restarts the child and
// sends the message again.

import readline from 'node:readline';

import { decodeRequest, encodeHello, encodeReply, encodeResult, ResultError } from './codec.js';
import { log } from './log.js';
import { fromError, fromValue, retry } from './outcome.js';

export const SDK_NAME = 'ballast-node/0.1.0';
export const DEFAULT_MAX_INFLIGHT = 64;

/**
 * The protocol version to speak: the option when given, else version 2 when ballast says
 * it speaks it (BALLAST_EXEC_PROTOCOL >= 2 in the environment), else version 1, which every
 * ballast speaks.
 */
export function chooseProtocol(option, env) {
  if (option !== undefined) {
    if (option !== 1 && option !== 2) throw new TypeError(`protocol must be 1 or 2, not ${option}`);
    return option;
  }
  const advertised = Number.parseInt(env.BALLAST_EXEC_PROTOCOL ?? '', 10);
  return advertised >= 2 ? 2 : 1;
}

const MAX_INFLIGHT_LIMIT = 2147483647;

export function checkMaxInflight(n) {
  if (n === undefined) return DEFAULT_MAX_INFLIGHT;
  // The hello carries it as a JSON integer, which ballast reads as a signed 32-bit one at most.
  if (!Number.isInteger(n) || n < 1 || n > MAX_INFLIGHT_LIMIT) {
    throw new TypeError(`maxInflight must be an integer from 1 to ${MAX_INFLIGHT_LIMIT}, not ${n}`);
  }
  return n;
}

function where(msg) {
  return `${msg.topic}[${msg.partition}]@${msg.offset} (attempt ${msg.attempt})`;
}

function thrown(err, what) {
  if (err instanceof Error && err.name === 'PermanentError') {
    log.warn(`${what} failed permanently: ${err.message}`);
  } else {
    log.warn(`${what} threw (retried): ${err instanceof Error ? err.stack : String(err)}`);
  }
  return fromError(err);
}

async function runMessage(fn, msg) {
  try {
    return fromValue(await fn(msg));
  } catch (err) {
    return thrown(err, `handler on ${where(msg)}`);
  }
}

async function runBatch(fn, msgs) {
  let v;
  try {
    v = await fn(msgs);
  } catch (err) {
    const o = thrown(err, `batch handler on ${msgs.length} message(s) from ${where(msgs[0])}`);
    return msgs.map(() => o);
  }
  if (!Array.isArray(v)) {
    const o = fromValue(v);
    return msgs.map(() => o);
  }
  if (v.length !== msgs.length) {
    const text = `batch handler returned ${v.length} outcomes for ${msgs.length} messages`;
    log.error(text);
    return msgs.map(() => retry(text));
  }
  return v.map(fromValue);
}

/** The outcomes of one request, one per message. */
async function outcomes(handler, req) {
  if (handler.batch) return runBatch(handler.batch, req.messages);
  const out = [];
  for (const msg of req.messages) out.push(await runMessage(handler.message, msg));
  return out;
}

/** A result's JSON; a result that cannot be encoded (a bad emit) is retried instead. */
function resultOf(outcome, msg) {
  try {
    return encodeResult(outcome);
  } catch (err) {
    if (!(err instanceof ResultError)) throw err;
    log.error(`handler on ${where(msg)} returned ${err.message}`);
    return encodeResult(retry(`handler returned ${err.message}`));
  }
}

async function answer(handler, req) {
  const results = (await outcomes(handler, req)).map((o, i) => resultOf(o, req.messages[i]));
  return encodeReply(req.id, results, req.batch);
}

/**
 * Serves requests from `input` until it ends.
 * @param {object} o
 * @param {import('node:stream').Readable} o.input  request lines
 * @param {(line: string) => void} o.write  writes one line (the newline is added by it)
 * @param {{message?: Function, batch?: Function}} o.handler
 * @param {1|2} o.protocol
 * @param {number} o.maxInflight  requests run at once (version 2)
 * @returns {Promise<void>} resolves when input ended and every reply is written
 */
export function serve({ input, write, handler, protocol, maxInflight }) {
  const limit = protocol === 2 ? maxInflight : 1;
  const queue = [];
  let active = 0;
  let ended = false;

  if (protocol === 2) {
    write(encodeHello(maxInflight, SDK_NAME));
  }
  return new Promise((resolve, reject) => {
    const lines = readline.createInterface({ input, crlfDelay: Infinity });
    const settle = () => {
      if (ended && active === 0 && queue.length === 0) resolve();
    };
    const pump = () => {
      while (active < limit && queue.length) {
        const req = queue.shift();
        active++;
        answer(handler, req)
          .then(write)
          .catch(reject)
          .finally(() => {
            active--;
            pump();
            settle();
          });
      }
    };
    lines.on('line', (line) => {
      try {
        queue.push(decodeRequest(line));
      } catch (err) {
        reject(err); // first: closing resolves a promise not yet settled
        lines.close();
        return;
      }
      pump();
    });
    lines.on('close', () => {
      ended = true;
      settle();
    });
  });
}
