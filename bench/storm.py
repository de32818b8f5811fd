#!/usr/bin/env python3
"""A connection storm from a generator that shares no code with gridmq: one thread, one epoll
set, raw MQTT bytes. It opens --clients connections, at most --concurrency handshakes (TCP
connect, CONNECT, CONNACK) in flight at once, keeps every one open, and prints one JSON line:
connects per second over the storm and CONNACK latency percentiles (from the TCP connect to
the CONNACK). Only the standard library: it runs wherever python3 does.

    python3 bench/storm.py --port 1883 --clients 5000 --concurrency 200 --mqtt 5
"""

import argparse
import errno
import json
import os
import selectors
import socket
import sys
import time


def connect_packet(client_id: bytes, mqtt5: bool, keep_alive: int) -> bytes:
    """CONNECT with a clean start, no will, no credentials (MQTT 5: no properties)."""
    name = b"\x00\x04MQTT"
    level = b"\x05" if mqtt5 else b"\x04"
    flags = b"\x02"  # clean start / clean session
    variable = name + level + flags + keep_alive.to_bytes(2, "big")
    if mqtt5:
        variable += b"\x00"  # property length 0
    body = variable + len(client_id).to_bytes(2, "big") + client_id
    return b"\x10" + remaining_length(len(body)) + body


def remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, int(round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[i]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--mqtt", type=int, choices=(3, 5), default=5)
    parser.add_argument("--hold", type=float, default=1.0, help="seconds to hold them all open")
    parser.add_argument("--label", default="")
    args = parser.parse_args()

    run = f"{os.getpid()}-{int(time.time() * 1000) % 1_000_000}"
    selector = selectors.DefaultSelector()
    started = {}  # socket -> connect time, while its handshake is in flight
    pending = {}  # socket -> CONNECT bytes not yet written
    opened = []
    latencies = []
    errors = []
    next_index = 0

    def open_one():
        nonlocal next_index
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        started[sock] = time.perf_counter()
        code = sock.connect_ex((args.host, args.port))
        if code not in (0, errno.EINPROGRESS):
            errors.append(os.strerror(code))
            sock.close()
            del started[sock]
            return
        pending[sock] = connect_packet(f"storm-{run}-{next_index}".encode(), args.mqtt == 5, 900)
        next_index += 1
        selector.register(sock, selectors.EVENT_WRITE)

    begin = time.perf_counter()
    while next_index < args.clients and len(started) < args.concurrency:
        open_one()
    while started:
        for key, mask in selector.select():
            sock = key.fileobj
            if mask & selectors.EVENT_WRITE:
                try:
                    sock.send(pending.pop(sock))
                except OSError as error:
                    errors.append(str(error))
                    selector.unregister(sock)
                    sock.close()
                    del started[sock]
                    continue
                selector.modify(sock, selectors.EVENT_READ)
                continue
            try:
                data = sock.recv(64)
            except OSError as error:
                data, reason = b"", str(error)
            else:
                reason = "closed before CONNACK"
            selector.unregister(sock)
            if len(data) >= 4 and data[0] == 0x20 and data[3] == 0:
                latencies.append(time.perf_counter() - started.pop(sock))
                opened.append(sock)
            else:
                errors.append(reason if not data else f"refused: {data[:8].hex()}")
                del started[sock]
                sock.close()
        while next_index < args.clients and len(started) < args.concurrency:
            open_one()
    elapsed = time.perf_counter() - begin
    time.sleep(args.hold)
    for sock in opened:
        sock.close()
    latencies.sort()
    ms = lambda v: None if v is None else round(v * 1000, 2)
    print(json.dumps({
        "scenario": "storm", "generator": "storm.py", "label": args.label,
        "mqtt": "5" if args.mqtt == 5 else "3.1.1", "clients": args.clients,
        "concurrency": args.concurrency, "connected": len(opened), "elapsed": round(elapsed, 3),
        "connects_per_sec": round(len(opened) / elapsed) if elapsed else None,
        "connack_p50_ms": ms(percentile(latencies, 50)),
        "connack_p99_ms": ms(percentile(latencies, 99)),
        "connack_max_ms": ms(latencies[-1] if latencies else None),
        "errors": len(errors), "first_error": errors[0] if errors else None,
    }))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
