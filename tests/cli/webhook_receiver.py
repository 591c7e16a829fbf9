#!/usr/bin/env python3
"""tests/cli/webhook_receiver.py - a webhook receiver for test_lag_alert.c.

Listens on 127.0.0.1 (a free port, written to --port-file once listening) and
logs each POST as one JSON line in --log: its path, its arrival time
(time.time()), its body (parsed as JSON: null when it is not JSON) and the
status answered (null while held). How it answers depends on the path:

  /ok...   200 (/ok, /ok-slack, ...)
  /fail2   500 to the first two requests, then 200
  /hang    never: holds the request (logged at once) until the process ends
"""
import argparse
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
counts = {}
forever = threading.Event()


def log_line(path, line):
    with lock, open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        with lock:
            n = counts.get(self.path, 0)
            counts[self.path] = n + 1
        status = {"/fail2": 500 if n < 2 else 200}.get(self.path)
        if self.path.startswith("/ok"):
            status = 200
        log_line(self.server.log, {"path": self.path, "t": time.time(), "body": doc,
                                   "content_type": self.headers.get("Content-Type"),
                                   "answered": status})
        if status is None:
            forever.wait()
            return
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, fmt, *args):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.log = args.log
    open(args.log, "w").close()
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % server.server_address[1])
    os.rename(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
