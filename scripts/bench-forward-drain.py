#!/usr/bin/env python3
"""Helpers for scripts/bench-forward.sh's drain figure (standard library only).

  bench-forward-drain.py wait-acked SOCKET N [TIMEOUT]
      polls secureopsd's `status` until forwarder.acknowledgedSequence >= N
  bench-forward-drain.py stream-rate NATS_URL STREAM
      prints "messages seconds rate": the stream's message count and the time
      between its first and last message as JetStream stamped them on
      storing, so the rate is the store rate itself, free of any polling
  bench-forward-drain.py delete NATS_URL STREAM
"""
import json
import socket
import sys
import time
from datetime import datetime


def status(path):
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        s.sendall(b'{"type":"status"}\n')
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("secureopsd closed the connection")
            reply += chunk
    return json.loads(reply)


def wait_acked(path, count, timeout):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = status(path).get("forwarder") or {}
            if last.get("acknowledgedSequence", 0) >= count:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    sys.exit(f"not all {count} alerts acknowledged within {timeout} s: {last}")


def jetstream_request(url, subject):
    """One request over the NATS protocol: PUB to `subject`, the MSG reply's body."""
    host, port = url.removeprefix("nats://").split(",")[0].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        stream = s.makefile("rb")
        stream.readline()  # INFO
        s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB _INBOX.drain 1\r\n'
                  + f"PUB {subject} _INBOX.drain 0\r\n\r\nPING\r\n".encode())
        while True:
            line = stream.readline()
            if not line:
                raise ConnectionError("NATS closed the connection")
            if line.startswith(b"MSG "):
                size = int(line.split()[-1])
                body = stream.read(size + 2)[:size]
                return json.loads(body)
            if line.startswith(b"-ERR"):
                raise RuntimeError(line.decode().strip())


def stamp(text):
    # RFC 3339 with nanoseconds: keep microseconds for datetime.
    head, _, rest = text.partition(".")
    fraction = "".join(ch for ch in rest if ch.isdigit())[:6].ljust(6, "0")
    return datetime.fromisoformat(f"{head}.{fraction}+00:00").timestamp()


def stream_rate(url, name):
    info = jetstream_request(url, f"$JS.API.STREAM.INFO.{name}")
    state = info["state"]
    seconds = stamp(state["last_ts"]) - stamp(state["first_ts"])
    messages = state["messages"]
    print(messages, f"{seconds:.4f}", f"{(messages - 1) / max(seconds, 1e-9):.0f}")


def main():
    command, *args = sys.argv[1:]
    if command == "wait-acked":
        wait_acked(args[0], int(args[1]), float(args[2]) if len(args) > 2 else 300)
    elif command == "stream-rate":
        stream_rate(args[0], args[1])
    elif command == "delete":
        jetstream_request(args[0], f"$JS.API.STREAM.DELETE.{args[1]}")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
