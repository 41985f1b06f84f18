#!/usr/bin/python3
"""Packet probes for the netsetup tests, run inside a sandbox namespace.

    probe.py '[{"op": "tcp", "addr": "203.0.113.10", "port": 443, "data": "tok"}, ...]'

prints one JSON result per action, in order (a JSON list). Operations:

  tcp   connect (timeout), send DATA, read until the peer closes (timeout):
        connected, errno, elapsed_ms (of the connect), reply, eof
  udp   a connected UDP socket: send DATA, wait up to timeout for a reply or an
        error: errno (ECONNREFUSED when an ICMP unreachable came back, "timeout"
        when nothing came), send_errno (when send() itself failed), elapsed_ms
        (send to error), reply
  icmp  raw ICMP / ICMPv6 echo request, wait for the echo reply: answered
  raw   one datagram of IP protocol PROTO (e.g. 253, 132) from a raw socket: sent

Every probe is bounded by its timeout; a probe never raises, it reports.
Addresses with a colon are IPv6.
"""

import errno
import json
import os
import select
import socket
import struct
import sys
import time


def fam(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def err_name(e):
    return errno.errorcode.get(e.errno, str(e.errno)) if e.errno else type(e).__name__


def ms_since(t0):
    return round((time.monotonic() - t0) * 1000, 2)


def tcp(a):
    out = {"connected": False, "errno": None, "reply": "", "eof": False}
    timeout = a.get("timeout", 2.0)
    s = socket.socket(fam(a["addr"]), socket.SOCK_STREAM)
    s.settimeout(timeout)
    t0 = time.monotonic()
    try:
        s.connect((a["addr"], a["port"]))
        out["connected"] = True
    except OSError as e:
        out["errno"] = err_name(e) if not isinstance(e, socket.timeout) else "ETIMEDOUT"
    out["elapsed_ms"] = ms_since(t0)
    if out["connected"]:
        try:
            if a.get("data"):
                s.sendall(a["data"].encode())
            deadline = time.monotonic() + timeout
            data = b""
            while time.monotonic() < deadline:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = s.recv(4096)
                if not chunk:
                    out["eof"] = True
                    break
                data += chunk
            out["reply"] = data.decode(errors="replace")
        except OSError as e:
            out["errno"] = err_name(e) if not isinstance(e, socket.timeout) else "ETIMEDOUT"
    s.close()
    return out


def udp(a):
    out = {"errno": None, "reply": None}
    timeout = a.get("timeout", 1.0)
    s = socket.socket(fam(a["addr"]), socket.SOCK_DGRAM)
    try:
        s.connect((a["addr"], a["port"]))
        t0 = time.monotonic()
        try:
            s.send(a.get("data", "probe").encode())
        except OSError as e:    # e.g. EPERM: a local output hook dropped it
            out["send_errno"] = err_name(e)
        r, _, _ = select.select([s], [], [], timeout)
        if r:
            try:
                out["reply"] = s.recv(4096).decode(errors="replace")
            except OSError as e:
                out["errno"] = err_name(e)
        else:
            out["errno"] = "timeout"
        out["elapsed_ms"] = ms_since(t0)
    except OSError as e:
        out["errno"] = err_name(e)
    s.close()
    return out


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return ~s & 0xffff


def icmp(a):
    out = {"answered": False, "errno": None}
    timeout = a.get("timeout", 1.0)
    six = fam(a["addr"]) == socket.AF_INET6
    ident = os.getpid() & 0xffff
    try:
        s = socket.socket(fam(a["addr"]), socket.SOCK_RAW,
                          socket.IPPROTO_ICMPV6 if six else socket.IPPROTO_ICMP)
    except OSError as e:
        out["errno"] = err_name(e)
        return out
    payload = a.get("data", "sluice-probe").encode()
    if six:     # the kernel fills in the ICMPv6 checksum
        pkt = struct.pack("!BBHHH", 128, 0, 0, ident, 1) + payload
    else:
        hdr = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
        pkt = struct.pack("!BBHHH", 8, 0, checksum(hdr + payload), ident, 1) + payload
    try:
        s.sendto(pkt, (a["addr"], 0))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([s], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                break
            data = s.recv(4096)
            icmp_hdr = data if six else data[(data[0] & 0x0f) * 4:]
            typ, _, _, rid, _ = struct.unpack("!BBHHH", icmp_hdr[:8])
            if typ == (129 if six else 0) and rid == ident:
                out["answered"] = True
                break
    except OSError as e:
        out["errno"] = err_name(e)
    s.close()
    return out


def raw(a):
    out = {"sent": False, "errno": None}
    try:
        s = socket.socket(fam(a["addr"]), socket.SOCK_RAW, a["proto"])
        s.sendto(a.get("data", "sluice-raw-probe").encode(), (a["addr"], 0))
        out["sent"] = True
        s.close()
    except OSError as e:
        out["errno"] = err_name(e)
    return out


OPS = {"tcp": tcp, "udp": udp, "icmp": icmp, "raw": raw}


def main():
    actions = json.loads(sys.argv[1])
    results = []
    for a in actions:
        r = OPS[a["op"]](a)
        results.append({**a, **r})
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
