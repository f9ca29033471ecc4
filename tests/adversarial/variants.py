"""Header spellings an attacker tries, with the error code each must get at submit."""

from __future__ import annotations

FORBIDDEN = "forbidden_header"
INVALID = "invalid_header"

# (headers, code, the header whose name or value the error is about)
SMUGGLING: list[tuple[dict[str, str], str, str]] = [
    ({"Transfer-Encoding": "chunked"}, FORBIDDEN, "Transfer-Encoding"),
    ({"transfer-encoding": "chunked"}, FORBIDDEN, "transfer-encoding"),
    ({"TRANSFER-ENCODING": "CHUNKED"}, FORBIDDEN, "TRANSFER-ENCODING"),
    ({"tRaNsFeR-eNcOdInG": "chunked"}, FORBIDDEN, "tRaNsFeR-eNcOdInG"),
    ({"Transfer-Encoding": " chunked "}, FORBIDDEN, "Transfer-Encoding"),
    ({"Transfer-Encoding": "gzip, chunked"}, FORBIDDEN, "Transfer-Encoding"),
    ({"Transfer_Encoding": "chunked"}, FORBIDDEN, "Transfer_Encoding"),
    ({"X-Ok": "1", "Transfer-Encoding": "identity", "transfer-encoding": "chunked"}, FORBIDDEN,
     "Transfer-Encoding"),
    ({"Content-Length": "0"}, FORBIDDEN, "Content-Length"),
    ({"content-length": "5"}, FORBIDDEN, "content-length"),
    ({"Connection": "keep-alive"}, FORBIDDEN, "Connection"),
    ({"connection": "close, Transfer-Encoding"}, FORBIDDEN, "connection"),
    ({"Keep-Alive": "timeout=600"}, FORBIDDEN, "Keep-Alive"),
    ({"Upgrade": "h2c"}, FORBIDDEN, "Upgrade"),
    ({"TE": "trailers, chunked"}, FORBIDDEN, "TE"),
    ({"Trailer": "Authorization"}, FORBIDDEN, "Trailer"),
    ({"Host": "internal.example"}, FORBIDDEN, "Host"),
    ({"Expect": "100-continue"}, FORBIDDEN, "Expect"),
    ({"Proxy-Authorization": "Basic eDp5"}, FORBIDDEN, "Proxy-Authorization"),
    ({"proxy-connection": "keep-alive"}, FORBIDDEN, "proxy-connection"),
    ({"X-Note": "a\r\nTransfer-Encoding: chunked"}, INVALID, "X-Note"),
    ({"X-Note": "a\nTransfer-Encoding: chunked"}, INVALID, "X-Note"),
    ({"X-Note": "a\rTransfer-Encoding: chunked"}, INVALID, "X-Note"),
    ({"X-Note": "a\r\n chunked"}, INVALID, "X-Note"),  # obs-fold
    ({"X-Note": "a\r\n\tchunked"}, INVALID, "X-Note"),  # obs-fold with a tab
    ({"X-Note": "a\r\n\r\nGET /smuggled HTTP/1.1"}, INVALID, "X-Note"),
    ({"X-Note": "a\u0000b"}, INVALID, "X-Note"),
    ({"X-Note": "a\u000bb"}, INVALID, "X-Note"),  # VT: a C0 control that is not HTAB
    ({"X-Note": "a\u0001b"}, INVALID, "X-Note"),
    ({"X-Note": "a\u007fb"}, INVALID, "X-Note"),
    ({"X-Note": "a\u0085b"}, INVALID, "X-Note"),  # NEL, a C1 control
    ({"X-Note\r\nTransfer-Encoding": "chunked"}, INVALID, "X-Note\r\nTransfer-Encoding"),
    ({"Transfer-Encoding ": "chunked"}, INVALID, "Transfer-Encoding "),
    ({" Transfer-Encoding": "chunked"}, INVALID, " Transfer-Encoding"),
    ({"Transfer-Encoding:": "chunked"}, INVALID, "Transfer-Encoding:"),
    ({"Transfer\u2010Encoding": "chunked"}, INVALID, "Transfer\u2010Encoding"),
    ({"": "x"}, INVALID, ""),
]  # fmt: skip

USER_AGENTS: list[tuple[str, str]] = [
    ("bot/1\r\nTransfer-Encoding: chunked", INVALID),
    ("bot/1\nX: y", INVALID),
    ("bot/1\u0000", INVALID),
    ("bot/1\u000cx", INVALID),  # FF
    ("bot/1\u009b", INVALID),
]

SMUGGLED_BODY = "0\r\n\r\nGET /smuggled-by-A HTTP/1.1\r\nHost: host\r\n\r\n"
