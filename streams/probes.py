"""Synchronous wire-protocol probes: free ports, open ports, a Kafka broker's metadata, a Redis pid.

Hand-built requests over plain sockets, so a probe works inside a running event loop
and needs no client library.
"""

from __future__ import annotations

import socket
import struct

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that nothing listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        chunks += chunk
    return bytes(chunks)


def kafka_metadata_brokers(host: str, port: int, timeout: float = 1.0) -> list[tuple[str, int]]:
    """The brokers a Kafka-protocol server advertises, from one Metadata v1 request.

    A hand-built request keeps the probe synchronous (callable inside a running event
    loop) and independent of a client library's private protocol classes.
    """
    correlation_id = 1
    client_id = b"reco-probe"
    # header v1: api_key=3 (Metadata), version 1; body: topics=null, i.e. no topic,
    # which matters because a named topic would be auto-created with the wrong count.
    message = struct.pack(">hhih", 3, 1, correlation_id, len(client_id)) + client_id
    message += struct.pack(">i", -1)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(message)) + message)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        payload = _recv_exact(sock, size)
    got_id, count = struct.unpack_from(">ii", payload, 0)
    if got_id != correlation_id:
        raise ConnectionError(f"unexpected correlation id {got_id}")
    offset, brokers = 8, []
    for _ in range(count):
        offset += 4  # node_id
        (host_len,) = struct.unpack_from(">h", payload, offset)
        offset += 2
        broker_host = payload[offset : offset + host_len].decode()
        offset += host_len
        (broker_port, rack_len) = struct.unpack_from(">ih", payload, offset)
        offset += 6 + max(rack_len, 0)
        brokers.append((broker_host, broker_port))
    return brokers


def redis_server_pid(host: str, port: int, timeout: float = 1.0) -> int:
    """The process id of the Redis server on host:port (``INFO server``)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
        header = b""
        while not header.endswith(b"\r\n"):
            header += _recv_exact(sock, 1)
        if not header.startswith(b"$"):
            raise ConnectionError(f"unexpected reply {header!r}")
        body = _recv_exact(sock, int(header[1:-2]) + 2).decode(errors="replace")
    for line in body.splitlines():
        if line.startswith("process_id:"):
            return int(line.split(":", 1)[1])
    raise ConnectionError("INFO server has no process_id")
