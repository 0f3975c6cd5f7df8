#!/usr/bin/env python3
"""A phonecheck webhook receiver that verifies each delivery's signature (standard library only).

phonecheck posts a `phonecheck.v1.JobEvent` as protobuf JSON with three headers:

    Phonecheck-Event-Id:   the event's id (the same on every delivery of it)
    Phonecheck-Timestamp:  the attempt's Unix time, in seconds
    Phonecheck-Signature:  v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>

A receiver recomputes the HMAC over the raw body, compares in constant time, rejects timestamps
older (or newer) than a tolerance, and answers 2xx only once it has kept the event; the same event
may come more than once (at-least-once delivery), so it keeps the ids it has seen.

Usage:
    WEBHOOK_SECRET=... python3 receiver.py --port 8080
Prints `listening on PORT` first, then one JSON line per request. Test options: --fail-first N
answers 500 to the first N deliveries; --hang never answers (until --max-seconds); --redirect-to URL
answers 307 there (phonecheck does not follow it); the receiver
exits by itself after --max-seconds.
"""

import argparse
import hashlib
import hmac
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1 << 20


def verify(secret: bytes, timestamp: str, body: bytes, signature: str, tolerance: int, now=None):
    """Returns None when the delivery is authentic and fresh, else why not."""
    if not timestamp.isdigit():
        return "no timestamp"
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > tolerance:
        return "timestamp outside the tolerance"
    expected = "v1=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        return "bad signature"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--secret-env", default="WEBHOOK_SECRET")
    parser.add_argument("--tolerance", type=int, default=300, help="seconds")
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--hang", action="store_true")
    parser.add_argument("--redirect-to", default="", help="answer 307 to this URL")
    parser.add_argument("--max-seconds", type=float, default=600)
    args = parser.parse_args()
    secret = os.environ.get(args.secret_env, "").encode()
    if not secret:
        print(f"the environment variable {args.secret_env} holds no secret", file=sys.stderr)
        return 2
    lock = threading.Lock()
    state = {"requests": 0, "seen": set()}
    stop = threading.Event()

    def emit(record):
        with lock:
            print(json.dumps(record), flush=True)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def answer(self, code):
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self):
            with lock:
                state["requests"] += 1
                n = state["requests"]
            if args.hang:
                # Never answers; the server's timeout must end the attempt.
                stop.wait(args.max_seconds)
                return
            if args.redirect_to:
                emit({"redirected": n})
                self.send_response(307)
                self.send_header("Location", args.redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self.answer(413)
                return
            body = self.rfile.read(length)
            why = verify(
                secret,
                self.headers.get("Phonecheck-Timestamp", ""),
                body,
                self.headers.get("Phonecheck-Signature", ""),
                args.tolerance,
            )
            if why:
                emit({"rejected": why})
                self.answer(400)
                return
            event = json.loads(body)
            if n <= args.fail_first:
                emit({"failed_on_purpose": n, "event_id": event.get("eventId"), "t": time.time()})
                self.answer(500)
                return
            with lock:
                duplicate = event["eventId"] in state["seen"]
                state["seen"].add(event["eventId"])
            emit({
                "verified": True,
                "t": time.time(),
                "duplicate": duplicate,
                "header_event_id": self.headers.get("Phonecheck-Event-Id", ""),
                "event": event,
            })
            self.answer(204)

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    print(f"listening on {server.server_address[1]}", flush=True)
    threading.Timer(args.max_seconds, lambda: (stop.set(), server.shutdown())).start()
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
