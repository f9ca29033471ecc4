"""Network bodies read whole, to their end or to a cap: the one way workers read a response."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

# What one read asks for; the stream hands back what it has (often less), and we read on.
CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class Body:
    """A response body as read: `data` (decompressed), and whether the cap cut it."""

    data: bytes
    truncated: bool


async def read_capped(response: aiohttp.ClientResponse, cap: int) -> Body:
    """Read `response`'s body to its end, or to `cap` bytes, whatever its framing (length,
    chunked, until close), pacing and content coding (aiohttp inflates gzip, deflate, br).

    `truncated` is true exactly when the body goes on past `cap`, and `data` is then exactly
    the first `cap` bytes; a body of `cap` bytes is whole. The rest is never read: leaving the
    response closes the connection. aiohttp inflates in bounded steps, so a compression bomb
    costs about `cap` of memory. A body that ends early (fewer bytes than its Content-Length, a
    broken chunk, a bad compressed stream) raises aiohttp.ClientPayloadError.
    """
    parts: list[bytes] = []  # one join at the end: a growing bytearray copies as it grows
    size = 0
    async for chunk in response.content.iter_chunked(CHUNK_BYTES):
        if size + len(chunk) > cap:
            parts.append(chunk[: cap - size])
            return Body(b"".join(parts), truncated=True)
        parts.append(chunk)
        size += len(chunk)
    return Body(b"".join(parts), truncated=False)
