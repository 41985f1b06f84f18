#!/usr/bin/env python3
"""A TCP server for the forward and link tests, run inside a sandbox.

Each connection sends one line, "GET N" (the server answers N bytes) or
"PUT N" followed by N bytes (the server answers "OK N" once it has them all);
every connection is appended to --out as a JSON line with the peer it came
from, so a test can prove what arrived and from where.

usage: fwd_server.py --addr ADDR --port P [--port P...] --out FILE --ready FILE
"""

import argparse
import json
import selectors
import socket
import threading


def serve(conn, peer, out, lock):
    rec = {"peer": peer[0], "peer_port": peer[1], "local_port": conn.getsockname()[1]}
    try:
        f = conn.makefile("rb")
        line = f.readline(64).decode(errors="replace").split()
        rec["op"] = line[0] if line else ""
        n = int(line[1]) if len(line) > 1 else 0
        if rec["op"] == "GET":
            chunk = b"x" * 65536
            left = n
            while left > 0:
                conn.sendall(chunk[:min(left, len(chunk))])
                left -= min(left, len(chunk))
        elif rec["op"] == "PUT":
            got = 0
            while got < n:
                b = f.read(min(65536, n - got))
                if not b:
                    break
                got += len(b)
            rec["bytes"] = got
            conn.sendall(f"OK {got}\n".encode())
    except (OSError, ValueError) as e:
        rec["error"] = str(e)
    finally:
        conn.close()
        with lock:
            with open(out, "a") as fh:
                fh.write(json.dumps(rec) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--port", type=int, action="append", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--ready", required=True)
    a = ap.parse_args()
    sel = selectors.DefaultSelector()
    for p in a.port:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((a.addr, p))
        s.listen(64)
        sel.register(s, selectors.EVENT_READ)
    open(a.ready, "w").close()
    lock = threading.Lock()
    while True:
        for key, _ in sel.select():
            conn, peer = key.fileobj.accept()
            threading.Thread(target=serve, args=(conn, peer, a.out, lock), daemon=True).start()


if __name__ == "__main__":
    main()
