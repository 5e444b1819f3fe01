"""HTTP/1.1 by hand, for requests that httpx would refuse to send or that must stop anywhere.

A client library sends well-formed requests and reads responses whole or not at all. These
helpers write exact bytes (a bad header, a chunked body, a cut request) and stop reading at
any byte, with a clean close (FIN) or an abort (RST).
"""

from __future__ import annotations

import json
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any


def request_bytes(
    method: str,
    target: str,
    *,
    port: int,
    body: bytes | None = None,
    headers: list[tuple[str, str]] | None = None,
    chunked: bool = False,
) -> bytes:
    """One request as it goes on the wire; `chunked` sends the body as one chunk."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in headers or []]
    if body is not None and chunked:
        lines.append("Transfer-Encoding: chunked")
        payload = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    elif body is not None:
        lines.append(f"Content-Length: {len(body)}")
        payload = body
    else:
        payload = b""
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


def json_request(
    method: str, target: str, *, port: int, data: Any, headers: list[tuple[str, str]] | None = None
) -> bytes:
    body = json.dumps(data).encode()
    return request_bytes(
        method,
        target,
        port=port,
        body=body,
        headers=[("Content-Type", "application/json"), *(headers or [])],
    )


def abort(sock: socket.socket) -> None:
    """Close with a reset (RST) instead of a FIN, as a crashed client or a cut network does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@dataclass
class RawResponse:
    """What came back: the status line's code, the headers as sent, and the body bytes."""

    status: int | None  # None: the connection closed before a status line
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    @property
    def payload(self) -> bytes:
        """The body without its chunked framing."""
        if (self.header("transfer-encoding") or "").lower() == "chunked":
            return dechunk(self.body)
        return self.body

    def json(self) -> Any:
        return json.loads(self.payload)


def dechunk(data: bytes) -> bytes:
    """The payload of a chunked body (as far as it goes)."""
    out = bytearray()
    while data:
        size_line, sep, rest = data.partition(b"\r\n")
        if not sep:
            break
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return bytes(out)


def parse_response(raw: bytes) -> RawResponse:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 ") or not sep:
        return RawResponse(None, body=raw)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in header_lines:
        name, _, value = line.partition(":")
        headers.append((name, value.strip()))
    return RawResponse(int(status_line.split()[1]), headers, body)


def exchange(
    port: int, data: bytes, *, timeout: float = 10.0, piece: int | None = None
) -> RawResponse:
    """Send `data` (in pieces of `piece` bytes, a moment apart, if given), then read until
    the server closes or a whole response has come."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            step = piece or len(data)
            for start in range(0, len(data), step):
                sock.sendall(data[start : start + step])
                if piece:
                    time.sleep(0.001)
        except (BrokenPipeError, ConnectionResetError):
            pass  # it may answer and close before reading everything; read what it said
        received = bytearray()
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
            if _complete(bytes(received)):
                break
    return parse_response(bytes(received))


def _complete(raw: bytes) -> bool:
    """Whether `raw` holds one whole response (by Content-Length or the last chunk)."""
    response = parse_response(raw)
    if response.status is None:
        return False
    length = response.header("content-length")
    if length is not None:
        return len(response.body) >= int(length)
    if (response.header("transfer-encoding") or "").lower() == "chunked":
        return response.body.endswith(b"0\r\n\r\n")
    return False
