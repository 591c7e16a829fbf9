// index.d.ts - types of @ballast/handler (written by hand; the package has no build step).

/// <reference types="node" />
import type { Buffer } from 'node:buffer';

/** A Kafka message, as ballast hands it to the handler. */
export declare class Message {
  readonly topic: string;
  readonly partition: number;
  /** Exact below 2^53 (a JavaScript number). */
  readonly offset: number;
  /** Milliseconds since the epoch, or null when the record has none. */
  readonly timestamp: number | null;
  /** Text (valid UTF-8 without NUL) as a string, other bytes as a Buffer; null when absent. */
  readonly key: string | Buffer | null;
  /** As key; null for a tombstone. */
  readonly value: string | Buffer | null;
  /** Header values as text, bytes or null; the last header of a name wins. */
  readonly headers: Readonly<Record<string, string | Buffer | null>>;
  /** 1 on the first delivery to the handler, 2 on the first retry, ... */
  readonly attempt: number;
  /**
   * The W3C trace context: the message's traceparent header when valid, or the context
   * ballast started for it (tracing = on); undefined when it has none.
   */
  readonly traceparent?: string;
  /** The message's W3C tracestate, beside a traceparent; undefined when it has none. */
  readonly tracestate?: string;
  /** The value parsed as JSON; null for a tombstone. Throws on a value that is not JSON. */
  json<T = unknown>(): T;
}

/** Bytes for an emitted record: a string travels as its UTF-8 bytes. */
export type Bytes = string | Uint8Array;

/** A record to produce as a message's effect. */
export interface OutRecord {
  /** Defaults to ballast's `output.topic`. */
  topic?: string;
  key?: Bytes | null;
  /** null or absent: a tombstone. */
  value?: Bytes | null;
  headers?: Record<string, Bytes | null>;
}

/** What happened to a message. Make one with ok(), retry(), fail() or emit(). */
export interface Outcome {
  readonly status: 'ok' | 'retry' | 'fail';
  readonly error?: unknown;
  readonly emit?: readonly OutRecord[];
}

/** Done (returning nothing means the same). */
export declare function ok(): Outcome;
/** A transient failure: retried with back-off, `retry.max.attempts` in all, then the DLQ. */
export declare function retry(err?: unknown): Outcome;
/** A permanent failure: the DLQ at once (a stop when there is none). */
export declare function fail(err?: unknown): Outcome;
/** Done, producing these records (at-least-once, or in the transaction with exactly-once). */
export declare function emit(...records: OutRecord[]): Outcome;

/** Thrown from a handler: the message fails permanently. Any other error means retry. */
export declare class PermanentError extends Error {
  constructor(message?: string, options?: { cause?: unknown });
}

/** What a handler may return: an Outcome; anything else (undefined included) means ok. */
export type HandlerResult = Outcome | void | unknown;

/** A batch handler's return: one outcome for all, or one per message, in order. */
export type BatchResult = Outcome | void | ReadonlyArray<Outcome | void | unknown>;

export interface Options {
  /**
   * Messages (batches, with handleBatch) worked on at once, declared to ballast in the
   * hello; ballast sends at most min(this, handler.exec.max.inflight). Default 64.
   */
  maxInflight?: number;
  /**
   * The protocol version. Default: 2 when ballast offers it (BALLAST_EXEC_PROTOCOL=2 in
   * the environment), else 1.
   */
  protocol?: 1 | 2;
  /** Runs after stdin closed and every reply was written, before the exit (close pools here). */
  onShutdown?: () => void | Promise<void>;
}

/** Serves ballast with one call per message until stdin closes, then exits. */
export declare function handle(
  fn: (msg: Message) => HandlerResult | Promise<HandlerResult>,
  options?: Options,
): Promise<never>;

/** Serves ballast with one call per batch (`processing = batch`). */
export declare function handleBatch(
  fn: (msgs: Message[]) => BatchResult | Promise<BatchResult>,
  options?: Options,
): Promise<never>;

/** Logs one line to stderr (stdout belongs to the protocol). */
export declare const log: {
  /** Only with BALLAST_HANDLER_DEBUG set. */
  debug(...args: unknown[]): void;
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
};
