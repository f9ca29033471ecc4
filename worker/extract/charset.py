"""Turn a response body into text: which character encoding, and decoding it.

Order (the HTML standard's, plus a detector): a byte-order mark wins; then the charset of the
Content-Type header; then a `<meta charset>` / `http-equiv` declaration in the first 8 KiB;
then, if the body is valid UTF-8, UTF-8; then charset_normalizer's guess; then windows-1252.
Labels are read as browsers read them (`iso-8859-1`, `latin1` and `ascii` mean windows-1252),
and a declared UTF-16 in a `<meta>` means UTF-8, since the declaration itself was ASCII.
"""

from __future__ import annotations

import codecs
import re

import charset_normalizer

META_SCAN_BYTES = 8192
DETECT_BYTES = 256 * 1024
FALLBACK = "cp1252"
_BOMS = (
    (codecs.BOM_UTF8, "utf_8"),
    (codecs.BOM_UTF16_LE, "utf_16_le"),
    (codecs.BOM_UTF16_BE, "utf_16_be"),
)
_META_CHARSET = re.compile(
    rb"""<meta[^>]*?charset\s*=\s*["']?\s*([a-zA-Z0-9_.:\-]+)""", re.IGNORECASE
)
# What browsers decode these labels as (WHATWG Encoding Standard).
_ALIASES = {
    "iso8859_1": "cp1252",
    "ascii": "cp1252",
    "iso8859_9": "cp1254",
    "tis_620": "cp874",
    "iso8859_11": "cp874",
    "gb2312": "gb18030",
    "gbk": "gb18030",
}


def normalize(label: str | None) -> str | None:
    """The Python codec for a charset label as browsers read it, or None if unknown."""
    if not label:
        return None
    try:
        name = codecs.lookup(label.strip().strip("\"'")).name
    except (LookupError, ValueError):
        return None
    name = name.replace("-", "_")
    return _ALIASES.get(name, name)


def _from_bom(raw: bytes) -> str | None:
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            return encoding
    return None


def _from_meta(raw: bytes) -> str | None:
    match = _META_CHARSET.search(raw[:META_SCAN_BYTES])
    if match is None:
        return None
    encoding = normalize(match.group(1).decode("ascii", "replace"))
    if encoding is not None and encoding.startswith("utf_16"):
        return "utf_8"
    return encoding


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by a truncated body is still UTF-8.
        return exc.start >= len(raw) - 3 and exc.reason == "unexpected end of data"
    return True


def _detect(raw: bytes) -> str:
    results = charset_normalizer.from_bytes(raw[:DETECT_BYTES])
    if not results:
        return FALLBACK
    calmest = min(result.chaos for result in results)
    # Western texts are often a tie between the windows code pages; windows-1252 is the web's
    # most common legacy encoding and the browsers' default, so it wins a tie.
    ties = [r.encoding for r in results if r.chaos <= calmest + 0.01]
    if FALLBACK in ties:
        return FALLBACK
    best = results.best()
    return normalize(best.encoding if best else None) or FALLBACK


def sniff(raw: bytes, header_charset: str | None, *, markup: bool = True) -> str:
    """The encoding to decode `raw` with; `markup` enables the `<meta>` declaration step."""
    return (
        _from_bom(raw)
        or normalize(header_charset)
        or (_from_meta(raw) if markup else None)
        or ("utf_8" if _is_utf8(raw) else None)
        or _detect(raw)
    )


def decode(raw: bytes, header_charset: str | None, *, markup: bool = True) -> tuple[str, str]:
    """The body as text, and the encoding used; undecodable bytes become U+FFFD."""
    encoding = sniff(raw, header_charset, markup=markup)
    return raw.decode(encoding, errors="replace").removeprefix("\ufeff"), encoding
