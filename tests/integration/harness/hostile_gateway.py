#!/usr/bin/python3
"""hostile_gateway.py: answers POST /payments with one hostile reply after
another, then with a success, to check that nothing a gateway sends can
crash a payment worker (used by ../hostile_replies.sh).

This is not a payment gateway (tests/fake_gateway is): it keeps no ledger
and only plays back REPLIES in order, one per request, whatever the key.

usage: hostile_gateway.py PORT_FILE
"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEEP = b"[" * 60000                       # nesting beyond max_stack_depth
REPLIES = [
    (200, {}, DEEP),
    (200, {}, b"{\"a\":" * 12000),                # 60 kB deep objects
    (200, {}, b"{\"status\":\"succeeded\",\"payment_id\":\"x\"}" + b" " * 100000),  # > 64 kB
    (200, {}, b"{\"status\":\"succeeded\",\"payment_id\":\"\xff\xfebad\"}"),
    (200, {}, b"{\"status\":\"succeeded\",\"payment_id\":\"" + b"p" * 5000 + b"\"}"),
    (200, {}, b"{\"status\":\"succeeded\",\"payment_id\":\"a\\u0000b\"}"),
    (200, {}, b"\x00\x01\x02 not json"),
    (503, {"Retry-After": "-1"}, b""),
    (503, {"Retry-After": "9" * 5000}, b"{\"error\":\"\xc3\x28\"}"),
    (429, {"Retry-After": "Tue, 99 Foo 2023 99:99:99 GMT"}, b"{\"error\":" + b"[" * 20000 + b"}"),
    (200, {}, b"{\"status\":\"succeeded\",\"payment_id\":\"pay_ok\"}"),
]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    count = 0

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        i = min(Handler.count, len(REPLIES) - 1)
        Handler.count += 1
        status, headers, body = REPLIES[i]
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(sys.argv[1], "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
