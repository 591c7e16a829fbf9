#!/usr/bin/env node
// exec-handler.js - an example `handler = exec` child in Node.js: fails values that are not JSON.
//
// Configure it with:
//     handler = exec
//     handler.exec.command = node examples/exec-handler.js
//
// The protocol (docs/exec-protocol.md is the contract), in short:
//   * ballast writes one JSON request per line on our stdin:
//       {"id": 7, "attempt": 1, "topic": "orders", "partition": 0, "offset": 42,
//        "timestamp": 1700000000000, "key": "k1", "value": "{...}", "headers": {}}
//     (key_b64 / value_b64 / headers_b64 instead when the bytes are not UTF-8 text);
//   * we answer each request with one line on stdout, in order, echoing its id:
//       {"id": 7, "status": "ok"}  or  "retry" / "fail" with an "error",
//     optionally with "emit": [{"topic", "key", "value", "headers"}];
//   * stdout belongs to the protocol: log with console.error (stderr). A stray
//     console.log line makes ballast restart this child and retry its message;
//   * when stdin closes, finish and exit: ballast is stopping.
'use strict';

const readline = require('node:readline');

function handle(request) {
  if ('value_b64' in request) {
    return { status: 'fail', error: 'value is binary, expected JSON' };
  }
  if (request.value === null) {
    return { status: 'ok' }; // a tombstone: nothing to validate
  }
  try {
    JSON.parse(request.value);
  } catch (err) {
    // Permanent: retrying will not make this value valid JSON.
    return { status: 'fail', error: `value is not JSON: ${err.message}` };
  }
  // A real handler does its work here, and answers
  // { status: 'retry', error } when a dependency is down.
  return { status: 'ok' };
}

const lines = readline.createInterface({ input: process.stdin, terminal: false });
lines.on('line', (line) => {
  let reply;
  let id;
  try {
    const request = JSON.parse(line);
    id = request.id;
    reply = handle(request);
  } catch (err) {
    console.error(`exec-handler: ${err.stack || err}`);
    reply = { status: 'fail', error: `handler error: ${err.message}` };
  }
  process.stdout.write(JSON.stringify({ id, ...reply }) + '\n');
});
lines.on('close', () => process.exit(0));
