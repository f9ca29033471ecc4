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
    data = bytearray()
    async for chunk in response.content.iter_chunked(CHUNK_BYTES):
        room = cap - len(data)
        if len(chunk) > room:
            data += chunk[:room]
            return Body(bytes(data), truncated=True)
        data += chunk
    return Body(bytes(data), truncated=False)
