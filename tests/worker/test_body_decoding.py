"""worker/bodies.py's decoders, byte by byte: whole streams decode, cut ones never finish."""

from __future__ import annotations

import gzip
import random
import zlib

import brotli
import pytest

from worker.bodies import ContentDecodingError, _decoder_for

TEXT = random.Random(7).randbytes(20_000).hex().encode()
CODED = {
    "gzip": gzip.compress(TEXT),
    "deflate": zlib.compress(TEXT),
    "br": brotli.compress(TEXT),
}


def decode(coding: str, data: bytes, piece: int, limit: int = 10**9) -> tuple[bytes, bool]:
    decoder = _decoder_for(coding)
    out = b"".join(decoder.feed(data[i : i + piece], limit) for i in range(0, len(data), piece))
    return out, decoder.finished()


@pytest.mark.parametrize("coding", sorted(CODED))
@pytest.mark.parametrize("piece", [1, 2, 7, 1000, 10**6])
def test_a_whole_stream_decodes_in_pieces_of_any_size(coding: str, piece: int) -> None:
    assert decode(coding, CODED[coding], piece) == (TEXT, True)


@pytest.mark.parametrize("coding", sorted(CODED))
@pytest.mark.parametrize("keep", [1, 2, 10, 0.5, -1])
def test_a_stream_cut_anywhere_is_not_finished(coding: str, keep: float) -> None:
    data = CODED[coding]
    cut = data[: int(len(data) * keep) if isinstance(keep, float) else keep]
    out, finished = decode(coding, cut, 512)
    assert not finished
    assert TEXT.startswith(out)


def test_gzip_members_and_trailing_bytes() -> None:
    two = gzip.compress(b"one ") + gzip.compress(b"two")
    for piece in (1, 3, len(two)):
        assert decode("gzip", two, piece) == (b"one two", True)
    assert decode("x-gzip", gzip.compress(b"one") + b"\0\0junk", 4) == (b"one", True)
    # A second member cut short is cut short.
    assert decode("gzip", two[:-5], 4)[1] is False


def test_raw_deflate_and_stacked_or_unknown_codings() -> None:
    raw = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    assert decode("deflate", raw.compress(TEXT) + raw.flush(), 100) == (TEXT, True)
    assert decode("identity", b"plain", 2) == (b"plain", True)
    assert decode("zstd", b"\x28\xb5\x2f\xfd", 2) == (b"\x28\xb5\x2f\xfd", True)  # as sent
    assert decode("", b"", 1) == (b"", True)
    assert decode("gzip", b"", 1) == (b"", True)  # an empty body (a HEAD, a 204)


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_corrupt_streams_raise(coding: str) -> None:
    # gzip and deflate carry a checksum: bytes changed anywhere are found.
    corrupt = bytearray(CODED[coding])
    corrupt[len(corrupt) // 3 : len(corrupt) // 3 + 40] = b"\xff" * 40
    with pytest.raises(ContentDecodingError, match=f"not valid {coding}"):
        decode(coding, bytes(corrupt), 4096)


def test_a_stream_that_is_not_brotli_raises() -> None:
    # Brotli has no checksum: what is caught is a stream that breaks its format.
    with pytest.raises(ContentDecodingError, match="not valid br"):
        decode("br", b"\xff\xff not brotli " * 40, 100)


@pytest.mark.parametrize("coding", sorted(CODED))
def test_a_bomb_gives_about_the_limit_per_feed(coding: str) -> None:
    bomb = {"gzip": gzip.compress, "deflate": zlib.compress, "br": brotli.compress}[coding](
        b"\0" * (50 * 1024 * 1024)
    )
    out = _decoder_for(coding).feed(bomb, 1000)
    assert 1000 < len(out) <= 64 * 1024  # past the limit (the cap is hit), never the 50 MB
