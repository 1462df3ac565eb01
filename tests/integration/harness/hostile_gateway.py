#!/usr/bin/python3
"""hostile_gateway.py: answers POST /payments with one hostile reply after
another, then with a success, to check that nothing a gateway sends can
crash a payment worker (used by ../hostile_replies.sh,
../hostile_network.sh and ../circuit_hostile.sh).

This is not a payment gateway (tests/fake_gateway is): in the "replies" and
"network" modes it keeps no ledger and only plays back a script of replies
in order, one per request, whatever the key; once the script is over every
request gets the last entry.

usage: hostile_gateway.py PORT_FILE [replies|network|circuit] [BLACKHOLE_PORT_FILE]

  replies  (default) bad bodies and headers, see REPLIES
  network  bad transfers (10 MB, endless drip, truncated, reset, ...),
           see NETWORK
  circuit  one behaviour for every request until told otherwise, for the
           circuit breaker test: POST /mode with a body naming one of
           CIRCUIT_MODES switches it; GET /stats answers
           {"mode":…, "requests":N, "charges":N, "duplicates":N}: requests
           to /payments received, keys answered with a success, keys
           answered with a success more than once (must stay 0)

With BLACKHOLE_PORT_FILE ("network" and "circuit" modes) it also opens a
second port on 127.0.0.1 whose listener never accepts and whose backlog is
full, so that connecting to it hangs.

Loopback only, standard library only.  It exits by itself after
FT_HOSTILE_LIFETIME seconds (default 150) so that it never outlives a test.
"""
import os
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LIFETIME = float(os.environ.get("FT_HOSTILE_LIFETIME", "150"))
DRIP_MAX = 60.0          # an endless drip gives up after this many seconds

DEEP = b"[" * 60000                       # nesting beyond max_stack_depth
OK = (200, {}, b"{\"status\":\"succeeded\",\"payment_id\":\"pay_ok\"}")

REPLIES = [
    OK,                                           # warm-up order
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
    # JSON with wrong types
    (200, {}, b"{\"status\":123,\"payment_id\":\"pay_wrong\"}"),
    (200, {}, b"{\"status\":\"succeeded\",\"payment_id\":{}}"),
    (200, {}, b"[{\"status\":\"succeeded\",\"payment_id\":\"pay_arr\"}]"),
    (200, {}, b"{\"status\":[\"succeeded\"],\"payment_id\":[1,2]}"),
    (200, {}, b"{\"status\":null,\"payment_id\":true}"),
    OK,
]

# (kind, argument) for the network script
NETWORK = [
    ("ok", None),                                 # warm-up: order 1 paid
    ("huge", 10 * 1024 * 1024),                   # 10 MB with a true length
    ("huge_chunked", 10 * 1024 * 1024),           # 10 MB, no length at all
    ("drip", None),                               # a byte every 100 ms, forever
    ("truncated", None),                          # Content-Length 1000, 40 sent, close
    ("short_length", None),                       # Content-Length 5, longer body sent
    ("reset", None),                              # headers + part body, then RST
    ("reset_early", None),                        # RST before any reply
    ("close_early", None),                        # clean close before any reply
    ("ok", None),                                 # order 2 paid
    ("retry_after", "315360000"),                 # 10 years
    ("ok", None),                                 # order 3 paid
    ("retry_after", "-5"),
    ("ok", None),                                 # order 4 paid; and so on
]

# circuit mode: name -> (kind, argument); "replies" kinds are played with
# reply(), the others with network().  Transient ones must open the circuit,
# permanent ones (400/422 failed, 402 declined) must not.
CIRCUIT_MODES = {
    "ok": ("ok", None),
    # transient
    "garbage": ("reply", (200, {}, b"\x00\x01\x02 not json")),
    "bad_503": ("reply", (503, {"Retry-After": "9" * 5000}, b"{\"error\":\"\xc3\x28\"}")),
    "reset": ("reset", None),
    "truncated": ("truncated", None),
    "close_early": ("close_early", None),
    "drip": ("drip", None),
    # permanent
    "bad_422": ("reply", (422, {}, b"{\"error\":" + b"[" * 20000 + b"}")),
    "bad_400": ("reply", (400, {}, b"{\"error\":\"\xff\xfe\x00bad\"}")),
    "bad_402": ("reply", (402, {}, b"\x00\x01 declined, not json")),
}

MODE = sys.argv[2] if len(sys.argv) > 2 else "replies"
SCRIPT = REPLIES if MODE == "replies" else NETWORK
lock = threading.Lock()
count = 0
circuit_mode = "ok"
charged = {}                 # circuit mode: Idempotency-Key -> successes sent


def rst_close(conn):
    """close with SO_LINGER 0: the peer gets a TCP RST"""
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    conn.close()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if MODE != "circuit" or self.path != "/stats":
            self.send_error(404)
            return
        with lock:
            body = ('{"mode":"%s","requests":%d,"charges":%d,"duplicates":%d}' %
                    (circuit_mode, count, len(charged),
                     sum(1 for n in charged.values() if n > 1))).encode()
        self.reply(200, {}, body)

    def do_POST(self):
        global count
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if MODE == "circuit":
            self.circuit(body)
            return
        with lock:
            i = min(count, len(SCRIPT) - 1)
            count += 1
        try:
            if MODE == "replies":
                self.reply(*SCRIPT[i])
            else:
                self.network(*SCRIPT[i])
        except OSError:
            self.close_connection = True   # the client gave up: fine

    def circuit(self, body):
        global count, circuit_mode
        if self.path == "/mode":
            name = body.decode("ascii", "replace").strip()
            if name not in CIRCUIT_MODES:
                self.send_error(400)
                return
            with lock:
                circuit_mode = name
            self.reply(200, {}, b"{}")
            return
        if self.path != "/payments":
            self.send_error(404)
            return
        key = self.headers.get("Idempotency-Key", "")
        with lock:
            count += 1
            kind, arg = CIRCUIT_MODES[circuit_mode]
            print("%.3f %d %s %s" % (time.time(), count, circuit_mode, key), flush=True)
            if kind == "ok":
                charged[key] = charged.get(key, 0) + 1
        try:
            if kind == "ok":
                self.reply(200, {}, b"{\"status\":\"succeeded\",\"payment_id\":\"pay_" +
                           key[:8].encode("ascii", "replace") + b"\"}")
            elif kind == "reply":
                self.reply(*arg)
            else:
                self.network(kind, arg)
        except OSError:
            self.close_connection = True   # the client gave up: fine

    def reply(self, status, headers, body, length=None):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def network(self, kind, arg):
        w = self.wfile
        if kind == "ok":
            self.reply(*OK)
        elif kind == "retry_after":
            self.reply(503, {"Retry-After": arg}, b"{\"error\":\"busy\"}")
        elif kind == "huge":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(arg))
            self.end_headers()
            chunk = b"{\"status\":\"succeeded\",\"payment_id\":\"" + b"h" * 65000
            chunk = chunk[:65536]
            sent = 0
            while sent < arg:
                part = chunk[:min(len(chunk), arg - sent)]
                w.write(part)
                sent += len(part)
            w.flush()
        elif kind == "huge_chunked":
            # HTTP/1.0-style: no length, the body ends at close
            self.close_connection = True
            w.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Connection: close\r\n\r\n")
            block = b"[" * 65536
            for _ in range(arg // len(block)):
                w.write(block)
            w.flush()
        elif kind == "drip":
            self.close_connection = True
            w.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 1000000\r\n\r\n{\"status\":")
            w.flush()
            end = time.monotonic() + DRIP_MAX
            while time.monotonic() < end:
                w.write(b" ")
                w.flush()
                time.sleep(0.1)
        elif kind == "truncated":
            self.close_connection = True
            w.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 1000\r\n\r\n"
                    b"{\"status\":\"succeeded\",\"payment_id\":\"pay_")
            w.flush()
            self.connection.shutdown(socket.SHUT_WR)
        elif kind == "short_length":
            # claims 5 bytes, sends a whole success: only 5 bytes count
            self.close_connection = True
            w.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 5\r\n\r\n"
                    b"{\"status\":\"succeeded\",\"payment_id\":\"pay_short\"}")
            w.flush()
        elif kind == "reset":
            self.close_connection = True
            w.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 1000\r\n\r\n{\"status\":\"succ")
            w.flush()
            time.sleep(0.05)
            rst_close(self.connection)
        elif kind == "reset_early":
            self.close_connection = True
            rst_close(self.connection)
        elif kind == "close_early":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default listen backlog of 5 overflows when a worker
    # opens 10 connections at once: the kernel then drops handshakes, and
    # a request can reach us a second later than it was sent
    request_queue_size = 128

    def handle_error(self, request, client_address):
        pass                                      # resets and broken pipes


def blackhole(portfile):
    """a listener that never accepts, its backlog filled by our own
    connections so that the kernel drops further SYNs: connects hang"""
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fillers = []
    for _ in range(4):
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.setblocking(False)
        try:
            c.connect(("127.0.0.1", port))
        except (BlockingIOError, OSError):
            pass
        fillers.append(c)
    time.sleep(0.2)
    with open(portfile + ".tmp", "w") as f:
        f.write(str(port))
    os.rename(portfile + ".tmp", portfile)
    return lsock, fillers


def main():
    threading.Timer(LIFETIME, lambda: os._exit(0)).start()
    keep = None
    if MODE in ("network", "circuit") and len(sys.argv) > 3:
        keep = blackhole(sys.argv[3])
    server = Server(("127.0.0.1", 0), Handler)
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    server.serve_forever()
    del keep


main()
