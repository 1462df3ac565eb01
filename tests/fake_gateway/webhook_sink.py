#!/usr/bin/env python3
"""webhook_sink.py: a webhook receiver for selftest.sh.

Listens on 127.0.0.1 (port 0 = free; the port is written to PORT_FILE) and
appends one JSON line per POST to LOG_FILE: {"path", "signature_header",
"signature", "body"}, where signature_header names the header that carried
the signature (Stripe-Signature or Webhook-Signature).  Answers 200, or 400
on a path ending in /reject.

    webhook_sink.py PORT_FILE LOG_FILE
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        name = "Stripe-Signature" if self.headers.get("Stripe-Signature") else "Webhook-Signature"
        rec = {"path": self.path, "signature_header": name,
               "signature": self.headers.get(name, ""), "body": body.decode("utf-8")}
        with open(sys.argv[2], "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        self.send_response(400 if self.path.endswith("/reject") else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    with open(sys.argv[1], "w", encoding="utf-8") as f:
        f.write(f"{srv.server_address[1]}\n")
    srv.serve_forever()


if __name__ == "__main__":
    main()
