"""A minimal WebSocket echo server for the test world (RFC 6455, enough for
tests): answers an `Upgrade: websocket` request with 101 and echoes every
frame it receives (unmasked, as a server must); any other request gets a 200
`no upgrade`. A request for /slow gets its 101 status line in two pieces,
1.5 s apart (a relay must wait for the rest, not spin). Every request head it reads is appended to --log as a JSON line
({"peer", "head"}), so tests can prove what arrived.

    ws_echo.py --addr 203.0.113.10 --addr 2001:db8:113::10 --port 8080 --log FILE
"""

import argparse
import base64
import hashlib
import json
import socket
import struct
import threading
import time

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def recv_exact(s, n):
    out = b""
    while len(out) < n:
        b = s.recv(n - len(out))
        if not b:
            raise EOFError
        out += b
    return out


def echo_frames(s):
    while True:
        b0, b1 = recv_exact(s, 2)
        n = b1 & 0x7f
        if n == 126:
            n = struct.unpack("!H", recv_exact(s, 2))[0]
        elif n == 127:
            n = struct.unpack("!Q", recv_exact(s, 8))[0]
        mask = recv_exact(s, 4) if b1 & 0x80 else b"\0\0\0\0"
        data = bytes(c ^ mask[i % 4] for i, c in enumerate(recv_exact(s, n)))
        hdr = bytes([b0]) + (bytes([n]) if n < 126 else
                             b"\x7e" + struct.pack("!H", n) if n < 65536 else
                             b"\x7f" + struct.pack("!Q", n))
        s.sendall(hdr + data)
        if b0 & 0x0f == 8:          # close: echoed, then done
            return


def serve(s, peer, log, lock):
    s.settimeout(10)
    try:
        head = b""
        while b"\r\n\r\n" not in head:
            b = s.recv(4096)
            if not b:
                return
            head += b
        head = head.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        with lock, open(log, "a") as f:
            f.write(json.dumps({"peer": peer, "head": head}) + "\n")
        fields = {}
        for line in head.split("\r\n")[1:]:
            k, _, v = line.partition(":")
            fields[k.strip().lower()] = v.strip()
        if fields.get("upgrade", "").lower() != "websocket":
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nConnection: close\r\n\r\n"
                      b"no upgrade\n")
            return
        key = fields.get("sec-websocket-key", "")
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        answer = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").encode()
        if head.split(" ", 2)[1] == "/slow":
            s.sendall(answer[:10])
            time.sleep(1.5)
            answer = answer[10:]
        s.sendall(answer)
        echo_frames(s)
    except (OSError, EOFError):
        pass
    finally:
        s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", action="append", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log", required=True)
    a = ap.parse_args()
    lock = threading.Lock()
    socks = []
    for addr in a.addr:
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        ls = socket.socket(fam, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((addr, a.port))
        ls.listen(64)
        socks.append(ls)

    def accept_loop(ls):
        while True:
            c, peer = ls.accept()
            threading.Thread(target=serve, args=(c, f"{peer[0]}:{peer[1]}", a.log, lock),
                             daemon=True).start()

    for ls in socks[1:]:
        threading.Thread(target=accept_loop, args=(ls,), daemon=True).start()
    accept_loop(socks[0])


if __name__ == "__main__":
    main()
