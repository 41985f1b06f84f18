#!/usr/bin/python3
"""A server that speaks first, for raw-TCP-by-name tests (dns.answers: virtual).

    banner_server.py --listen ADDR:PORT [--listen ...] --log FILE

On each connection it sends `SSH-2.0-sluice-banner at ADDR:PORT` (the address
the client reached, so a test can tell which upstream the proxy chose), then
answers each line `hello X` with `echo hello X`. A line starting `SSH-` (an ssh
client's own banner) is recorded and the connection closed, as a server with
no common key exchange would. One JSON line per connection goes to FILE when
it ends: local, peer, the bytes received (as text, replacement characters for
the rest).
"""

import argparse
import asyncio
import json
import socket


async def serve(args):
    log = open(args.log, "a", buffering=1, encoding="utf-8")

    async def client(reader, writer):
        local = writer.get_extra_info("sockname")
        peer = writer.get_extra_info("peername")
        where = f"[{local[0]}]:{local[1]}" if ":" in local[0] else f"{local[0]}:{local[1]}"
        got = b""
        try:
            writer.write(f"SSH-2.0-sluice-banner at {where}\r\n".encode())
            await writer.drain()
            while True:
                line = await asyncio.wait_for(reader.readline(), timeout=30)
                if not line:
                    break
                got += line
                if line.startswith(b"SSH-"):
                    break
                if line.startswith(b"hello "):
                    writer.write(b"echo " + line)
                    await writer.drain()
        except (OSError, asyncio.TimeoutError):
            pass
        finally:
            log.write(json.dumps({"local": where, "peer": peer[0],
                                  "data": got.decode("utf-8", "replace")}) + "\n")
            writer.close()

    servers = []
    for spec in args.listen:
        addr, _, port = spec.rpartition(":")
        addr = addr.strip("[]")
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        servers.append(await asyncio.start_server(client, addr, int(port), family=family,
                                                  reuse_address=True))
    open(args.log + ".ready", "w").close()
    await asyncio.gather(*(s.serve_forever() for s in servers))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", action="append", required=True)
    ap.add_argument("--log", required=True)
    asyncio.run(serve(ap.parse_args()))


if __name__ == "__main__":
    main()
