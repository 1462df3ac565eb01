#!/usr/bin/python3
"""redirect_server.py: answers every POST with a redirect to TARGET, to
check that the payment workers never follow redirects (used by
../url_safety.sh).  Loopback only.  Statuses alternate between the ones
given (default 302 and 307: 307 keeps the method and body, so a client
that followed it would really POST the payment to TARGET).

GET /count returns how many POSTs were answered.

usage: redirect_server.py PORT_FILE TARGET_URL [STATUS...]
"""
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TARGET = sys.argv[2]
STATUSES = [int(s) for s in sys.argv[3:]] or [302, 307]
lock = threading.Lock()
count = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        global count
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        with lock:
            status = STATUSES[count % len(STATUSES)]
            count += 1
        body = b'{"redirect":true}'
        self.send_response(status)
        self.send_header("Location", TARGET + self.path)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        body = str(count).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(sys.argv[1], "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
