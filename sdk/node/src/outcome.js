// outcome.js - what a handler returns: ok, retry, fail, or records to emit.

const OUTCOME = Symbol('ballast.outcome');

/** A permanent failure: thrown from a handler, the message fails (DLQ) instead of retrying. */
export class PermanentError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = 'PermanentError';
  }
}

function make(status, error, emit) {
  const o = { status };
  if (error !== undefined && error !== null) o.error = error;
  if (emit && emit.length) o.emit = emit;
  Object.defineProperty(o, OUTCOME, { value: true });
  return Object.freeze(o);
}

/** Done. Returning nothing means the same. */
export function ok() {
  return make('ok');
}

/** A transient failure: ballast retries the message with back-off, then dead-letters it. */
export function retry(err) {
  return make('retry', err);
}

/** A permanent failure: ballast dead-letters the message (or stops, without a DLQ). */
export function fail(err) {
  return make('fail', err);
}

/** Done, with these records produced as the message's effect. */
export function emit(...records) {
  return make('ok', undefined, records);
}

export function isOutcome(v) {
  return v !== null && typeof v === 'object' && v[OUTCOME] === true;
}

/** The outcome of a handler's return value: an outcome as is, anything else is ok. */
export function fromValue(v) {
  return isOutcome(v) ? v : ok();
}

/** The outcome of an error a handler threw. */
export function fromError(err) {
  return err instanceof PermanentError ? fail(err) : retry(err);
}
