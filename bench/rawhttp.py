"""A minimal HTTP/1.1 keep-alive client for the load generator.

The requests are serialized before the clock starts and the client only writes bytes and reads
the status line, headers and ``Content-Length`` body back, so the load generator spends a few
microseconds per request where a full client library spends a few hundred: on a small machine the
client's own work would otherwise show up as the server's latency.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit


def serialize(url: str, body: bytes, headers: dict[str, str]) -> bytes:
    parts = urlsplit(url)
    lines = [f"POST {parts.path or '/'} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(body)}",
             *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Connection:
    """One keep-alive connection; ``request`` sends prepared bytes and returns the status code."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        #: not connected yet (the pool opens fresh ones before a timed wave)
        self.fresh = True
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @classmethod
    def to(cls, url: str) -> Connection:
        parts = urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or 80)

    async def open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self.fresh = False

    async def request(self, raw: bytes) -> int:
        if self._writer is None or self._writer.is_closing():
            await self.open()
        assert self._reader is not None and self._writer is not None
        self._writer.write(raw)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length, close = 0, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        if length:
            await self._reader.readexactly(length)
        if close:
            self.close()
        return status

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
