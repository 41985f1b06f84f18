#!/usr/bin/python3
"""A stand-in for sluice-proxy in the netsetup tests: a transparent TCP listener
and a DNS service that record what reached them, as JSON lines.

TCP: binds ADDR:PORT with IP_TRANSPARENT (IPV6_TRANSPARENT for v6), so that
TPROXY can hand it connections for any destination. For each accepted
connection it records the peer, getsockname() (the sandbox's original
destination under TPROXY) and the first bytes the client sent (up to --wait
seconds), then closes.

DNS: binds ADDR:DNS_PORT over UDP and TCP and answers every A query with
192.0.2.1 (other types: an empty NOERROR), so clients get an answer they accept.
Each query is recorded with the peer, the local address, the original
destination where the kernel tells it (UDP: IP_RECVORIGDSTADDR, which is the
original one under TPROXY and the DNATed one under DNAT; TCP: SO_ORIGINAL_DST,
the pre-DNAT one) and the raw qname. Under TPROXY a UDP reply is sent from the
address the client asked, as the client expects.

With --uid the sockets are bound first and the process then drops to that UID
(the way sluice-proxy binds, then drops privileges): pod mode tells the proxy's
traffic apart by its UID.
"""

import argparse
import base64
import ipaddress
import json
import os
import socket
import struct
import sys
import threading
import time

import dns.exception
import dns.message
import dns.rdatatype
import dns.rrset

SOL_IP = 0
SOL_IPV6 = 41
IP_TRANSPARENT = 19
IPV6_TRANSPARENT = 75
IP_RECVORIGDSTADDR = 20
IPV6_RECVORIGDSTADDR = 74
SO_ORIGINAL_DST = 80
ANSWER_A = "192.0.2.1"


class Log:
    def __init__(self, path):
        self._f = open(path, "a", buffering=1, encoding="ascii")
        self._lock = threading.Lock()

    def write(self, **rec):
        rec["ts"] = round(time.time(), 6)
        with self._lock:
            self._f.write(json.dumps(rec, separators=(",", ":")) + "\n")
            self._f.flush()


def family_of(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def transparent(sock, family):
    if family == socket.AF_INET6:
        sock.setsockopt(SOL_IPV6, IPV6_TRANSPARENT, 1)
    else:
        sock.setsockopt(SOL_IP, IP_TRANSPARENT, 1)


def bind(addr, port, kind):
    family = family_of(addr)
    s = socket.socket(family, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    transparent(s, family)
    s.bind((addr, port))
    if kind == socket.SOCK_STREAM:
        s.listen(256)
    return s


def sockaddr_text(sa):
    """(addr, port) of a sockaddr_in / sockaddr_in6 in raw bytes."""
    fam = struct.unpack_from("=H", sa)[0]
    port = struct.unpack_from("!H", sa, 2)[0]
    if fam == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, sa[4:8]), port
    if fam == socket.AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, sa[8:24]), port
    return None, None


def original_dst_tcp(conn):
    """The pre-DNAT destination of a TCP connection, or (None, None)."""
    try:
        if conn.family == socket.AF_INET6:
            raw = conn.getsockopt(SOL_IPV6, SO_ORIGINAL_DST, 28)
        else:
            raw = conn.getsockopt(SOL_IP, SO_ORIGINAL_DST, 16)
    except OSError:
        return None, None
    return sockaddr_text(raw)


def qinfo(wire):
    """(qname as text, qtype as text, response wire) for a DNS query."""
    q = dns.message.from_wire(wire)
    resp = dns.message.make_response(q)
    name, qtype = "", ""
    if q.question:
        rr = q.question[0]
        name = rr.name.to_text()
        qtype = dns.rdatatype.to_text(rr.rdtype)
        if rr.rdtype == dns.rdatatype.A:
            resp.answer.append(dns.rrset.from_text(rr.name, 5, "IN", "A", ANSWER_A))
    return name, qtype, resp.to_wire()


def recv_some(conn, wait, limit=4096):
    conn.settimeout(wait)
    data = b""
    deadline = time.monotonic() + wait
    try:
        while len(data) < limit and time.monotonic() < deadline:
            conn.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = conn.recv(limit - len(data))
            if not chunk:
                break
            data += chunk
            if data:
                break       # the first bytes are enough
    except OSError:
        pass
    return data


def serve_tcp(sock, log, wait):
    while True:
        conn, peer = sock.accept()
        threading.Thread(target=tcp_conn, args=(conn, peer, log, wait), daemon=True).start()


def tcp_conn(conn, peer, log, wait):
    try:
        local = conn.getsockname()
        data = recv_some(conn, wait)
        log.write(kind="tcp", peer=peer[0], peer_port=peer[1], orig_dst=local[0],
                  orig_port=local[1], data=base64.b64encode(data).decode("ascii"))
    finally:
        conn.close()


def serve_dns_tcp(sock, log):
    while True:
        conn, peer = sock.accept()
        threading.Thread(target=dns_tcp_conn, args=(conn, peer, log), daemon=True).start()


def read_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def dns_tcp_conn(conn, peer, log):
    conn.settimeout(5)
    try:
        local = conn.getsockname()
        odst, oport = original_dst_tcp(conn)
        while True:
            (n,) = struct.unpack("!H", read_exact(conn, 2))
            wire = read_exact(conn, n)
            name, qtype, resp = qinfo(wire)
            log.write(kind="dns", proto="tcp", peer=peer[0], peer_port=peer[1],
                      local=local[0], local_port=local[1], orig_dst=odst, orig_port=oport,
                      qname=name, qtype=qtype)
            conn.sendall(struct.pack("!H", len(resp)) + resp)
    except (EOFError, OSError, ValueError, dns.exception.DNSException):
        pass
    finally:
        conn.close()


def serve_dns_udp(sock, log):
    family = sock.family
    if family == socket.AF_INET6:
        sock.setsockopt(SOL_IPV6, IPV6_RECVORIGDSTADDR, 1)
    else:
        sock.setsockopt(SOL_IP, IP_RECVORIGDSTADDR, 1)
    local = sock.getsockname()
    while True:
        wire, anc, _, peer = sock.recvmsg(65535, 1024)
        odst, oport = None, None
        for level, ctype, cdata in anc:
            if ctype in (IP_RECVORIGDSTADDR, IPV6_RECVORIGDSTADDR):
                odst, oport = sockaddr_text(cdata)
        try:
            name, qtype, resp = qinfo(wire)
        except (ValueError, dns.exception.DNSException):
            log.write(kind="dns", proto="udp", peer=peer[0], peer_port=peer[1],
                      local=local[0], local_port=local[1], orig_dst=odst, orig_port=oport,
                      qname=None, qtype=None, error="not DNS")
            continue
        log.write(kind="dns", proto="udp", peer=peer[0], peer_port=peer[1], local=local[0],
                  local_port=local[1], orig_dst=odst, orig_port=oport, qname=name,
                  qtype=qtype)
        try:
            if odst and (ipaddress.ip_address(odst), oport) != (
                    ipaddress.ip_address(local[0]), local[1]):
                # TPROXY: answer from the address the client asked
                r = socket.socket(family, socket.SOCK_DGRAM)
                r.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                transparent(r, family)
                r.bind((odst, oport))
                r.sendto(resp, peer[:2])
                r.close()
            else:
                sock.sendto(resp, peer)
        except OSError as e:
            log.write(kind="error", what=f"DNS reply to {peer[0]}: {e}")


def drop_to(uid):
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--addr", action="append", required=True,
                    help="address to listen on (repeat for v4 and v6)")
    ap.add_argument("--port", type=int, required=True, help="transparent TCP port")
    ap.add_argument("--dns-port", type=int, default=0, help="DNS port (0: none)")
    ap.add_argument("--out", required=True, help="JSON lines file to append records to")
    ap.add_argument("--ready", help="file created once every socket is bound")
    ap.add_argument("--wait", type=float, default=1.0,
                    help="seconds to wait for a client's first bytes")
    ap.add_argument("--uid", type=int, help="drop to this UID (and GID) after binding")
    args = ap.parse_args()

    log = Log(args.out)
    threads = []
    for addr in args.addr:
        threads.append(threading.Thread(target=serve_tcp, daemon=True, args=(
            bind(addr, args.port, socket.SOCK_STREAM), log, args.wait)))
        if args.dns_port:
            threads.append(threading.Thread(target=serve_dns_udp, daemon=True, args=(
                bind(addr, args.dns_port, socket.SOCK_DGRAM), log)))
            threads.append(threading.Thread(target=serve_dns_tcp, daemon=True, args=(
                bind(addr, args.dns_port, socket.SOCK_STREAM), log)))
    if args.ready:      # every socket listens from here on (written before a UID drop)
        with open(args.ready + ".tmp", "w") as f:
            f.write(f"{os.getpid()}\n")
        os.rename(args.ready + ".tmp", args.ready)
    if args.uid is not None:
        drop_to(args.uid)
    for t in threads:
        t.start()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
