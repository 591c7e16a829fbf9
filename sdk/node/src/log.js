// log.js - the handler's log: one line per call on stderr, which ballast passes through to its own.

import { format } from 'node:util';

function writer(level) {
  return (...args) => {
    process.stderr.write(`handler[${process.pid}] ${level}: ${format(...args)}\n`);
  };
}

/** Logs to stderr (stdout belongs to the protocol); debug lines only with BALLAST_HANDLER_DEBUG set. */
export const log = Object.freeze({
  debug: (...args) => {
    if (process.env.BALLAST_HANDLER_DEBUG) writer('debug')(...args);
  },
  info: writer('info'),
  warn: writer('warn'),
  error: writer('error'),
});
