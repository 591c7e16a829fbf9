#!/usr/bin/env python3
# exec-handler.py - an example `handler = exec` child: fails values that are not JSON.
#
# Configure it with:
#     handler = exec
#     handler.exec.command = python3 examples/exec-handler.py
#
# The exec protocol, in short (docs/exec-protocol.md is the contract):
#   * ballast starts this program once per worker and keeps it running;
#   * it writes one JSON object per line on our stdin, one per message:
#       {"id": 7, "attempt": 1,               # request number, try number
#        "topic": "orders", "partition": 0, "offset": 42,
#        "timestamp": 1700000000000,          # ms since the epoch, or null
#        "key": "k1", "value": "{...}",        # text, or null
#        "headers": {"name": "text"}}
#     Keys, values and header values that are not UTF-8 text come as
#     "key_b64" / "value_b64" / "headers_b64": {...} (base64) instead;
#   * we answer every line with exactly one line on stdout, in the same
#     order, echoing its "id": {"id": 7, "status": "ok"},
#     {"id": 7, "status": "retry", "error": "..."} for a transient failure
#     (ballast retries with backoff), or {"id": 7, "status": "fail",
#     "error": "..."} for a permanent one (dead-letter queue). A reply may
#     also carry records to produce:
#       "emit": [{"topic": "out", "key": "k", "value": "v", "headers": {}}]
#   * stdout belongs to the protocol: log to stderr, which ballast passes
#     through to its own. A stray line on stdout makes ballast restart this
#     child and retry the message it was answering;
#   * when stdin closes, finish and exit: ballast is shutting down.
# If this program dies, ballast restarts it (with backoff) and retries the
# messages it had not answered, without counting that as an attempt.

import json
import sys


def handle(request):
    """Decides the fate of one message; returns the reply object."""
    if "value_b64" in request:
        # Not even UTF-8 text, so certainly not JSON.
        return {"status": "fail", "error": "value is binary, expected JSON"}
    value = request.get("value")
    if value is None:
        # A tombstone (deleted key): nothing to validate.
        return {"status": "ok"}
    try:
        json.loads(value)
    except ValueError as err:
        # Permanent: retrying will not make this value valid JSON.
        return {"status": "fail", "error": "value is not JSON: %s" % err}
    # A real handler would do its work here, and return
    # {"status": "retry", "error": ...} when a dependency is down.
    return {"status": "ok"}


def main():
    # readline() rather than "for line in sys.stdin": it hands each line
    # over as soon as it arrives, without waiting to fill a buffer.
    for line in iter(sys.stdin.readline, ""):
        request_id = None
        try:
            request = json.loads(line)
            request_id = request.get("id")
            reply = handle(request)
        except Exception as err:  # a bug here must not kill the child
            print("exec-handler: %r" % err, file=sys.stderr)
            reply = {"status": "fail", "error": "handler error: %s" % err}
        reply["id"] = request_id
        sys.stdout.write(json.dumps(reply) + "\n")
        # Flush after every reply: ballast waits for this line before it
        # sends the next message (or finishes the batch).
        sys.stdout.flush()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
