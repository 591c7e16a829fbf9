// index.js - @ballast/handler: write a ballast exec handler as one async function.
//
//   import { handle, retry, PermanentError } from '@ballast/handler';
//   handle(async (msg) => { ... });
//
// handle() makes this process a ballast exec child: it takes stdout for the protocol
// (anything else written there goes to stderr), speaks version 2 when ballast offers it,
// runs the function for each message, and exits 0 once stdin closes and the work in flight
// has been answered. README.md has the whole story.

import { log } from './log.js';
import { checkMaxInflight, chooseProtocol, serve } from './serve.js';

export { Message } from './codec.js';
export { log } from './log.js';
export { emit, fail, ok, PermanentError, retry } from './outcome.js';

let protocolWrite = null;

/**
 * Takes process.stdout for the protocol: the returned function writes a line there, and
 * every other write to process.stdout (console.log, console.info, a library's progress
 * output) goes to stderr instead, where it cannot be mistaken for a reply.
 */
function takeStdout() {
  if (protocolWrite) return protocolWrite;
  const out = process.stdout;
  const realWrite = out.write;
  protocolWrite = (line) => realWrite.call(out, `${line}\n`);
  out.write = (chunk, encoding, callback) => process.stderr.write(chunk, encoding, callback);
  // EPIPE: ballast is gone, so nobody waits for the replies.
  out.on('error', (err) => {
    log.error(`stdout: ${err.message}; exiting`);
    process.exit(1);
  });
  return protocolWrite;
}

async function run(handler, options = {}) {
  const protocol = chooseProtocol(options.protocol, process.env);
  const maxInflight = checkMaxInflight(options.maxInflight);
  const write = takeStdout();
  let status = 0;

  try {
    await serve({ input: process.stdin, write, handler, protocol, maxInflight });
  } catch (err) {
    log.error(`${err.message}; exiting so that ballast starts a fresh child`);
    status = 1;
  }
  if (options.onShutdown) {
    try {
      await options.onShutdown();
    } catch (err) {
      log.error(`onShutdown: ${err instanceof Error ? err.stack : err}`);
      status = 1;
    }
  }
  process.exit(status);
}

/**
 * Serves ballast's requests with `fn`, one call per message, until stdin closes; then
 * exits. Never returns.
 */
export function handle(fn, options) {
  if (typeof fn !== 'function') throw new TypeError('handle() needs a function');
  return run({ message: fn }, options);
}

/** As handle(), with one call per batch (`processing = batch`). */
export function handleBatch(fn, options) {
  if (typeof fn !== 'function') throw new TypeError('handleBatch() needs a function');
  return run({ batch: fn }, options);
}
