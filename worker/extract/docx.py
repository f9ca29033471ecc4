"""DOCX to blocks: mammoth (BSD) turns the Word XML into clean, semantic HTML, read here into
headings, paragraphs, nested list items and tables (worker/extract/docblocks.py).

mammoth maps Word's paragraph styles (Heading 1-6, Title, list numbering) to HTML and ignores
presentation, which is what an agent wants. Images are dropped (never decoded: mammoth would
inline them as base64). Title and author come from docProps/core.xml, pages from
docProps/app.xml (as the producing program saved it; absent when it did not).
Before anything is parsed, the archive is checked: not a ZIP (an encrypted Word file is an
OLE container) is `encrypted` or `corrupt`; members that inflate past `max_unzipped` bytes are
`corrupt` (a ZIP bomb).
The `html` format is mammoth's HTML (links and emphasis kept).
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

import lxml.etree
import lxml.html
import mammoth
import mammoth.images

from worker.extract.docblocks import DocBlock, DocumentError, squash

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_CORE_NS = {
    "dc": "http://purl.org/dc/elements/1.1/",
    "cp": "http://schemas.openxmlformats.org/package/2006/metadata/core-properties",
}
_APP_NS = {"ep": "http://schemas.openxmlformats.org/officeDocument/2006/extended-properties"}
_XML_PARSER = lxml.etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
_HEADINGS = {f"h{n}": n for n in range(1, 7)}


def _archive(raw: bytes, max_unzipped: int) -> zipfile.ZipFile:
    if raw.startswith(OLE_MAGIC):
        raise DocumentError(
            "encrypted", "The Word document is encrypted (password-protected): cannot read it."
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
    except (zipfile.BadZipFile, ValueError):
        raise DocumentError(
            "corrupt", "The Word document is corrupt (not a ZIP archive)."
        ) from None
    # Images are never read (mammoth's converter is replaced); the XML is, into memory.
    xml = [i for i in archive.infolist() if i.filename.endswith((".xml", ".rels"))]
    if sum(info.file_size for info in xml) > max_unzipped:
        raise DocumentError("corrupt", "The Word document's XML inflates past the size limit.")
    if "word/document.xml" not in archive.namelist():
        raise DocumentError("corrupt", "The Word document has no word/document.xml.")
    return archive


def _xml(archive: zipfile.ZipFile, name: str) -> Any:
    try:
        return lxml.etree.fromstring(archive.read(name), _XML_PARSER)
    except (KeyError, lxml.etree.XMLSyntaxError):
        return None


def _first(root: Any, path: str, ns: dict[str, str]) -> str | None:
    if root is None:
        return None
    found = root.find(path, ns)
    text = squash(found.text or "") if found is not None else ""
    return text or None


def _metadata(archive: zipfile.ZipFile) -> dict[str, Any]:
    core = _xml(archive, "docProps/core.xml")
    pages = _first(_xml(archive, "docProps/app.xml"), "ep:Pages", _APP_NS)
    return {
        "title": _first(core, "dc:title", _CORE_NS),
        "author": _first(core, "dc:creator", _CORE_NS),
        "pages": int(pages) if pages and pages.isdigit() else None,
    }


def _no_image(image: Any) -> dict[str, str]:
    return {"alt": image.alt_text or ""}


def _list_blocks(element: Any, depth: int, out: list[DocBlock]) -> None:
    ordered = element.tag == "ol"
    for item in element.iterchildren("li"):
        nested = [child for child in item if child.tag in ("ul", "ol")]
        for child in nested:
            item.remove(child)
        out.append(DocBlock("item", squash(item.text_content()), level=depth, ordered=ordered))
        for child in nested:
            _list_blocks(child, depth + 1, out)


def _table_block(element: Any) -> DocBlock:
    rows = [
        [squash(cell.text_content()) for cell in row.iterchildren("td", "th")]
        for row in element.iter("tr")
    ]
    return DocBlock("table", rows=[row for row in rows if row])


def html_blocks(markup: str) -> list[DocBlock]:
    """The blocks of mammoth's HTML (a flat sequence of block elements)."""
    if not markup.strip():
        return []
    root = lxml.html.fragment_fromstring(markup, create_parent="div")
    blocks: list[DocBlock] = []
    for element in root:
        tag = element.tag
        if tag in _HEADINGS:
            blocks.append(DocBlock("heading", squash(element.text_content()), level=_HEADINGS[tag]))
        elif tag in ("ul", "ol"):
            _list_blocks(element, 0, blocks)
        elif tag == "table":
            blocks.append(_table_block(element))
        else:
            blocks.append(DocBlock("paragraph", squash(element.text_content())))
    return blocks


def read_docx(raw: bytes, max_unzipped: int) -> tuple[list[DocBlock], dict[str, Any], str]:
    """The blocks, metadata (title, author, pages) and HTML body of a DOCX file; raises
    DocumentError."""
    archive = _archive(raw, max_unzipped)
    try:
        converted = mammoth.convert_to_html(
            io.BytesIO(raw), convert_image=mammoth.images.img_element(_no_image)
        )
    except (KeyError, ValueError, zipfile.BadZipFile, lxml.etree.LxmlError) as exc:
        raise DocumentError("corrupt", f"The Word document is corrupt: {exc}") from None
    blocks = html_blocks(converted.value)
    if not any(b.text or b.rows for b in blocks):
        raise DocumentError("empty", "The Word document has no text.")
    return blocks, _metadata(archive), converted.value
