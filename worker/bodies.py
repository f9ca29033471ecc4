"""Network bodies read whole, to their end or to a cap: the one way workers read a response.

Content codings are undone here, not by aiohttp (the clients set `auto_decompress=False`):
aiohttp accepts a gzip stream that stops in the middle (it checks only deflate at the end), so
a body cut short came back as a shorter, "whole" page. Here every coded body must reach the
end of its compressed stream, or the read fails with ContentDecodingError.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import brotli

# What one read asks for; the stream hands back what it has (often less), and we read on.
CHUNK_BYTES = 64 * 1024
# What the workers' clients offer, exactly the codings `_decoder_for` undoes.
ACCEPT_ENCODING = "gzip, deflate, br"
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Body:
    """A response body as read: `data` (decoded), and whether the cap cut it."""

    data: bytes
    truncated: bool


class ContentDecodingError(Exception):
    """The body's Content-Encoding could not be undone: a corrupt stream, or one that ends
    before its compressed end. `dropped`: it ended with the connection (a close-delimited
    body), which a dropped connection does too."""

    def __init__(self, message: str, *, dropped: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.dropped = dropped


class _Decoder(Protocol):
    def feed(self, data: bytes, limit: int) -> bytes:
        """Decoded bytes of `data`: at most about `limit` when the input holds more."""

    def finished(self) -> bool:
        """Whether the stream reached its compressed end (or nothing was fed)."""


class _Identity:
    def feed(self, data: bytes, limit: int) -> bytes:
        return data

    def finished(self) -> bool:
        return True


class _Inflater:
    """gzip (one member or several in a row) and deflate (zlib-wrapped, or raw deflate as some
    servers send it: told apart by the zlib header, as browsers do). Bytes after the end of
    the stream that start no gzip member are ignored, as browsers ignore them."""

    def __init__(self, gzip: bool) -> None:
        self.gzip = gzip
        self._obj: zlib._Decompress | None = None  # made when the stream's first bytes are here
        self._pending = b""  # first bytes too few to tell the stream's form by
        self._ignoring = False  # past the end, on bytes that start no member

    def _new(self, first: bytes) -> zlib._Decompress:
        if self.gzip:
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        cmf, flg = first[0], first[1]
        zlib_wrapped = cmf & 0x0F == 8 and ((cmf << 8) | flg) % 31 == 0
        return zlib.decompressobj(zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS)

    def feed(self, data: bytes, limit: int) -> bytes:
        data, self._pending = self._pending + data, b""
        out: list[bytes] = []
        produced = 0
        while data and not self._ignoring and produced <= limit:
            if self._obj is not None and self._obj.eof:  # a stream ended: what follows it?
                if not self.gzip or not _GZIP_MAGIC.startswith(data[:2]):
                    self._ignoring = True
                    break
                self._obj = None  # the next gzip member
            if self._obj is None:
                if len(data) < 2:
                    self._pending = data
                    break
                self._obj = self._new(data)
            try:
                chunk = self._obj.decompress(data, limit - produced + 1)
            except zlib.error as exc:
                name = "gzip" if self.gzip else "deflate"
                raise ContentDecodingError(f"The body is not valid {name}: {exc}") from exc
            out.append(chunk)
            produced += len(chunk)
            if self._obj.unconsumed_tail:  # the limit stopped it: the cap is reached
                break
            data = self._obj.unused_data if self._obj.eof else b""
        return b"".join(out)

    def finished(self) -> bool:
        if self._obj is None:
            return not self._pending  # nothing fed (an empty body), or a member's first byte
        return bool(self._obj.eof)


class _Unbrotli:
    def __init__(self) -> None:
        self._obj = brotli.Decompressor()
        self._fed = False

    def feed(self, data: bytes, limit: int) -> bytes:
        self._fed = self._fed or bool(data)
        try:
            return bytes(self._obj.process(data, output_buffer_limit=limit + 1))
        except brotli.error as exc:
            raise ContentDecodingError(f"The body is not valid br: {exc}") from exc

    def finished(self) -> bool:
        return not self._fed or bool(self._obj.is_finished())


def _decoder_for(content_encoding: str) -> _Decoder:
    """The decoder for a Content-Encoding value (codings applied in order, each one of ours;
    `identity` and an empty value decode nothing). Unknown codings pass through as sent."""
    codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    if len(codings) != 1:
        return _Identity()  # none, or stacked codings no server sends unasked: left as sent
    if codings[0] in ("gzip", "x-gzip"):
        return _Inflater(gzip=True)
    if codings[0] == "deflate":
        return _Inflater(gzip=False)
    if codings[0] == "br":
        return _Unbrotli()
    return _Identity()


def _close_delimited(response: aiohttp.ClientResponse) -> bool:
    """Whether the body ends only when the connection does (no length, not chunked)."""
    chunked = "chunked" in response.headers.get("Transfer-Encoding", "").lower()
    return not chunked and response.content_length is None


async def read_capped(response: aiohttp.ClientResponse, cap: int) -> Body:
    """Read `response`'s body to its end, or to `cap` decoded bytes, whatever its framing
    (length, chunked, until close), pacing and content coding (gzip, deflate, br).

    `truncated` is true exactly when the body goes on past `cap`, and `data` is then exactly
    the first `cap` bytes; a body of `cap` bytes is whole. The rest is never read: leaving the
    response closes the connection. Inflating goes in bounded steps, so a compression bomb
    costs about `cap` of memory. A body that ends early (fewer bytes than its Content-Length, a
    broken chunk) raises aiohttp.ClientPayloadError; a coded body that is corrupt, or whose
    compressed stream has not ended when the body does, raises ContentDecodingError.
    """
    decoder = _decoder_for(response.headers.get("Content-Encoding", ""))
    parts: list[bytes] = []  # one join at the end: a growing bytearray copies as it grows
    size = 0
    async for raw in response.content.iter_chunked(CHUNK_BYTES):
        chunk = decoder.feed(raw, cap - size)
        if size + len(chunk) > cap:
            parts.append(chunk[: cap - size])
            return Body(b"".join(parts), truncated=True)
        parts.append(chunk)
        size += len(chunk)
    if not decoder.finished():
        dropped = _close_delimited(response)
        how = "the connection closed" if dropped else "the body ended"
        raise ContentDecodingError(
            f"The compressed body was cut short: {how} before the end of its "
            f"{response.headers.get('Content-Encoding', '').strip()} stream.",
            dropped=dropped,
        )
    return Body(b"".join(parts), truncated=False)
