#!/usr/bin/python3
"""Capture server of the sluice test world: a silent sink in the `inet` namespace.

It listens on a fixed set of TCP and UDP ports on its own addresses, never sends
a byte, and appends one JSON line per event (open, data, close, datagram) to
DIR/events.jsonl so tests can prove what did (or did not) leave a sandbox.
"""

import argparse
import asyncio
import base64
import itertools
import json
import os
import signal
import socket
import sys
import time

# Bytes kept per TCP connection; beyond this only the count grows, logged at each
# MiB (a flood must not fill the disk). Large enough for every test that inspects
# content.
DATA_CAP = 4 * 1024 * 1024
READ_SIZE = 65536


class EventLog:
    """Append-only JSON Lines file, flushed per event; opened O_APPEND so a test
    may truncate it at any time (world.capture_reset)."""

    def __init__(self, path):
        self._f = open(path, "a", buffering=1, encoding="ascii")

    def write(self, **event):
        event["ts"] = round(time.time(), 6)
        self._f.write(json.dumps(event, separators=(",", ":")) + "\n")
        self._f.flush()


def b64(data):
    return base64.b64encode(data).decode("ascii")


class Capture:
    def __init__(self, log, hold):
        self.log = log
        self.hold = hold
        self.ids = itertools.count(1)

    async def tcp(self, reader, writer):
        cid = next(self.ids)
        peer = writer.get_extra_info("peername")
        local = writer.get_extra_info("sockname")
        self.log.write(event="open", conn=cid, proto="tcp", peer=peer[0], peer_port=peer[1],
                       local=local[0], local_port=local[1])
        total = 0
        why = "eof"
        try:
            while True:
                data = await asyncio.wait_for(reader.read(READ_SIZE), timeout=self.hold)
                if not data:
                    break
                total += len(data)
                if total - len(data) < DATA_CAP:
                    keep = data[:DATA_CAP - (total - len(data))]
                    self.log.write(event="data", conn=cid, data=b64(keep))
                elif (total - len(data)) >> 20 != total >> 20:
                    # past the cap, the running count at each MiB: a connection held
                    # open (a budget, a throttle) still says how much came
                    self.log.write(event="count", conn=cid, bytes=total)
        except asyncio.TimeoutError:
            why = "hold_timeout"
        except (ConnectionError, OSError):
            why = "reset"
        finally:
            self.log.write(event="close", conn=cid, bytes=total, why=why)
            writer.close()


class Datagrams(asyncio.DatagramProtocol):
    def __init__(self, capture, local):
        self.capture = capture
        self.local = local

    def datagram_received(self, data, addr):
        self.capture.log.write(event="datagram", conn=next(self.capture.ids), proto="udp",
                               peer=addr[0], peer_port=addr[1], local=self.local[0],
                               local_port=self.local[1], data=b64(data[:DATA_CAP]),
                               bytes=len(data))


async def serve(args):
    log = EventLog(os.path.join(args.dir, "events.jsonl"))
    cap = Capture(log, args.hold)
    loop = asyncio.get_running_loop()
    servers = []
    for addr in args.addr:
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        for port in args.tcp:
            servers.append(await asyncio.start_server(cap.tcp, host=addr, port=port,
                                                      family=family, reuse_address=True,
                                                      backlog=256))
        for port in args.udp:
            await loop.create_datagram_endpoint(lambda a=addr, p=port: Datagrams(cap, (a, p)),
                                                local_addr=(addr, port), family=family)
    ready = os.path.join(args.dir, "ready")
    with open(ready + ".tmp", "w") as f:
        f.write(f"{os.getpid()}\n")
    os.rename(ready + ".tmp", ready)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    for s in servers:
        s.close()


def ports(text):
    return [int(p) for p in text.split(",") if p]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dir", required=True, help="directory for events.jsonl and ready")
    ap.add_argument("--addr", action="append", required=True, help="address to bind (repeat)")
    ap.add_argument("--tcp", type=ports, default=[], help="comma-separated TCP ports")
    ap.add_argument("--udp", type=ports, default=[], help="comma-separated UDP ports")
    ap.add_argument("--hold", type=float, default=30.0,
                    help="close a TCP connection after this many idle seconds")
    args = ap.parse_args()
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
