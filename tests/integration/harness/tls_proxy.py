#!/usr/bin/python3
"""tls_proxy.py: an https endpoint on loopback that forwards POST
/payments to the fake gateway over plain http (used by ../tls.sh to
check certificate verification against a self-signed certificate).

usage: tls_proxy.py PORT_FILE CERT_FILE KEY_FILE TARGET_URL
"""
import http.client
import ssl
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT_FILE, CERT, KEY, TARGET = sys.argv[1:5]
target = urllib.parse.urlsplit(TARGET)
FORWARD = ("Content-Type", "Idempotency-Key", "Authorization", "Accept")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        headers = {k: self.headers[k] for k in FORWARD if self.headers.get(k)}
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
        try:
            conn.request("POST", self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            status = resp.status
            extra = [(k, v) for k, v in resp.getheaders() if k.lower() == "retry-after"]
        except OSError as e:
            status, data, extra = 502, str(e).encode(), []
        finally:
            conn.close()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass        # refused handshakes are the point of the test


ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(CERT, KEY)
server = Server(("127.0.0.1", 0), Handler)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
with open(PORT_FILE, "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
