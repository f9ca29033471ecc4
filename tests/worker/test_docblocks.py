"""Document readers and the block renderer without services: fpdf2 and python-docx files made
here, hostile archives, and the Markdown the blocks become."""

from __future__ import annotations

import io
import zipfile

import pytest

from tests.worker import documents
from worker.extract.docblocks import DocBlock, DocumentError, to_html, to_markdown, to_text
from worker.extract.docx import OLE_MAGIC, read_docx
from worker.extract.pdf import read_pdf


def test_markdown_of_blocks() -> None:
    blocks = [
        DocBlock("heading", "Title", level=1),
        DocBlock("paragraph", "# not a heading"),
        DocBlock("item", "one", ordered=True),
        DocBlock("item", "nested", level=1),
        DocBlock("item", "two", ordered=True),
        DocBlock("table", rows=[["a|b", "c"], ["1"]]),
        DocBlock("paragraph", "   "),
    ]
    assert to_markdown(blocks) == (
        "# Title\n\n\\# not a heading\n\n1. one\n  - nested\n2. two\n\n"
        "| a\\|b | c |\n| --- | --- |\n| 1 |  |\n"
    )
    assert to_text(blocks) == "Title\n# not a heading\none\nnested\ntwo\na|b\tc\n1"
    html = to_html(blocks, "T<")
    assert "<title>T&lt;</title>" in html
    assert "<ol><li>one</li><ul><li>nested</li></ul><li>two</li></ol>" in html


def test_an_fpdf2_pdf_reads_back() -> None:
    blocks, meta = read_pdf(documents.fpdf_report(), 500)
    markdown = to_markdown(blocks)
    assert markdown.startswith("# Harbour Survey\n\nThe survey counted every vessel")
    assert "| Fishing | 412 | 61% |" in markdown
    assert meta == {
        "title": "Harbour Survey",
        "author": "Mary Somerville",
        "pages": 1,
        "links": [],
    }


def test_a_table_without_borders_and_text_that_is_not_one() -> None:
    blocks, _ = read_pdf(documents.fpdf_report(ruled=False), 500)
    markdown = to_markdown(blocks)
    assert "| Vessel | Count | Share |\n| --- | --- | --- |\n| Fishing | 412 | 61% |" in markdown
    assert sum(block.kind == "table" for block in blocks) == 1


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (documents.encrypted(documents.fpdf_report()), "encrypted"),
        (documents.image_only_pdf(), "image_only"),
        (b"%PDF-1.7\n garbage", "corrupt"),
        (b"", "corrupt"),
    ],
)
def test_unreadable_pdfs(raw: bytes, reason: str) -> None:
    with pytest.raises(DocumentError) as caught:
        read_pdf(raw, 500)
    assert caught.value.reason == reason


def test_the_page_cap_is_checked_before_reading() -> None:
    with pytest.raises(DocumentError) as caught:
        read_pdf(documents.fpdf_report(), 0)
    assert (caught.value.reason, caught.value.pages) == ("too_many_pages", 1)


def test_a_python_docx_file_reads_back() -> None:
    blocks, meta, html = read_docx(documents.python_docx(), 10**7)
    assert to_markdown(blocks).startswith("# Lighthouse Log\n\nThe keeper writes")
    assert meta["author"] == "Caroline Herschel"
    assert "<table>" in html


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (OLE_MAGIC + bytes(512), "encrypted"),  # Office encrypts into an OLE container
        (b"not a zip", "corrupt"),
        (_zip({"hello.txt": b"hi"}), "corrupt"),
        (_zip({"word/document.xml": b"<" + b" " * 2_000_000 + b"/>"}), "corrupt"),  # a bomb
    ],
)
def test_unreadable_docx(raw: bytes, reason: str) -> None:
    with pytest.raises(DocumentError) as caught:
        read_docx(raw, 1_000_000)
    assert caught.value.reason == reason


def _listing_pdf() -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    pdf.multi_cell(0, 6, "Run this query:")
    pdf.ln(2)
    pdf.set_font("Courier", size=10)
    for line in ("SELECT name,", "       price", "FROM product;"):
        pdf.cell(text=line, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    pdf.set_font("Helvetica", size=11)
    pdf.multi_cell(0, 6, "It returns every product.")
    return bytes(pdf.output())


def test_a_listing_becomes_a_code_block_indented_as_printed() -> None:
    blocks, _ = read_pdf(_listing_pdf(), 500)
    assert to_markdown(blocks) == (
        "Run this query:\n\n```\nSELECT name,\n       price\nFROM product;\n```\n\n"
        "It returns every product.\n"
    )


def test_a_pdfs_links_and_a_title_from_its_first_heading() -> None:
    from fpdf import FPDF

    from worker.extract.docfile import PDF_TYPE, build_from_file

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 20)
    pdf.cell(text="Tide Tables", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=11)
    pdf.cell(text="The almanac", link="https://almanac.example/2026", new_x="LMARGIN", new_y="NEXT")
    pdf.multi_cell(0, 6, "Older tables are at https://archive.example/tides for anyone.")
    result = build_from_file(
        bytes(pdf.output()),
        kind="pdf",
        url="https://almanac.example/tides.pdf",
        formats=["links", "metadata"],
        extract=None,
        metadata={"content_type": PDF_TYPE},
        max_pages=10,
    )
    assert [link["url"] for link in result["links"]["internal"]] == ["https://almanac.example/2026"]
    assert [link["url"] for link in result["links"]["external"]] == [
        "https://archive.example/tides"
    ]
    assert result["metadata"]["title"] == "Tide Tables"
    assert "links" not in result["metadata"]
