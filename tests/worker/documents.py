"""Real PDF and DOCX files for the document tests, made at test time by several producers.

LibreOffice (headless, from Debian: `make install` installs it) converts an HTML report to DOCX
and that DOCX to PDF, a flat ODT with a two-column section and python-docx's DOCX (a table
without borders) to PDF; fpdf2 writes a PDF with a
ruled table; python-docx writes a DOCX with Word's own styles; pypdf encrypts a PDF; fpdf2 and
Pillow make an image-only PDF. References: poppler's `pdftotext` for PDFs, python-docx for
DOCX. Nothing binary is committed.
"""

from __future__ import annotations

import difflib
import io
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPORT_HTML = """<html><head><title>Quarterly Report</title>
<meta name="author" content="Ada Lovelace"></head><body>
<h1>Quarterly Report</h1>
<p>The analytical engine weaves algebraic patterns just as the Jacquard loom weaves flowers
and leaves. This report covers the first quarter of the year.</p>
<h2>Highlights</h2>
<ul><li>Revenue grew by twelve percent</li><li>Two new factories opened</li>
<li>Costs fell in every region</li></ul>
<h2>Figures by region</h2>
<table border="1"><tr><th>Region</th><th>Revenue</th><th>Growth</th></tr>
<tr><td>North</td><td>1200</td><td>5%</td></tr>
<tr><td>South</td><td>950</td><td>12%</td></tr>
<tr><td>East</td><td>700</td><td>-3%</td></tr></table>
<h2>Outlook</h2>
<p>We expect steady demand through the summer months, with the usual dip in August.</p>
</body></html>"""

WORDS = [
    *("river", "stone", "lantern", "harbour", "meadow", "copper", "violet", "thunder"),
    *("orchard", "glacier", "falcon", "ember", "willow", "canyon", "saffron", "beacon"),
    *("marble", "tundra", "quartz", "harvest"),
]


def column_paragraph(number: int) -> str:
    """A distinctive paragraph: it starts with its own marker word."""
    body = " ".join(WORDS[(number * 7 + i) % len(WORDS)] for i in range(60))
    return f"Marker{number:02d} {body}."


COLUMN_PARAGRAPHS = [column_paragraph(n) for n in range(12)]

FODT = """<?xml version="1.0" encoding="UTF-8"?>
<office:document xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"
 xmlns:style="urn:oasis:names:tc:opendocument:xmlns:style:1.0"
 xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"
 xmlns:fo="urn:oasis:names:tc:opendocument:xmlns:xsl-fo-compatible:1.0"
 xmlns:dc="http://purl.org/dc/elements/1.1/"
 xmlns:meta="urn:oasis:names:tc:opendocument:xmlns:meta:1.0"
 office:version="1.2" office:mimetype="application/vnd.oasis.opendocument.text">
<office:meta><dc:title>Two Columns</dc:title><dc:creator>Grace Hopper</dc:creator></office:meta>
<office:automatic-styles>
<style:style style:name="Title1" style:family="paragraph"><style:text-properties
 fo:font-size="22pt" fo:font-weight="bold"/></style:style>
<style:style style:name="Sect1" style:family="section"><style:section-properties>
<style:columns fo:column-count="2" fo:column-gap="0.4in"/></style:section-properties></style:style>
</office:automatic-styles>
<office:body><office:text>
<text:h text:style-name="Title1" text:outline-level="1">Two Columns</text:h>
<text:section text:style-name="Sect1" text:name="Columns">{paragraphs}</text:section>
</office:text></office:body></office:document>"""


@dataclass(frozen=True)
class Documents:
    """Paths of the generated files."""

    folder: Path

    def path(self, name: str) -> Path:
        return self.folder / name

    def read(self, name: str) -> bytes:
        return self.path(name).read_bytes()


def require_tools() -> None:
    missing = [tool for tool in ("libreoffice", "pdftotext") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (make install installs them with apt)")


def _libreoffice(folder: Path, target: str, *sources: Path) -> None:
    profile = folder / "lo-profile"
    subprocess.run(
        [
            "libreoffice",
            f"-env:UserInstallation=file://{profile}",
            "--headless",
            "--convert-to",
            target,
            "--outdir",
            str(folder),
            *map(str, sources),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )


def fpdf_report(ruled: bool = True) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_title("Harbour Survey")
    pdf.set_author("Mary Somerville")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 22)
    pdf.cell(text="Harbour Survey", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=11)
    pdf.ln(4)
    pdf.multi_cell(
        0,
        6,
        "The survey counted every vessel that entered the harbour in spring. "
        "Fishing boats were the largest group, followed by ferries.",
    )
    pdf.ln(4)
    with pdf.table(borders_layout="ALL" if ruled else "NONE") as table:
        for row in (
            ("Vessel", "Count", "Share"),
            ("Fishing", "412", "61%"),
            ("Ferry", "180", "27%"),
            ("Yacht", "83", "12%"),
        ):
            cells = table.row()
            for value in row:
                cells.cell(value)
    pdf.ln(4)
    pdf.multi_cell(0, 6, "Traffic peaked in the second week of May, when the herring arrived.")
    return bytes(pdf.output())


def image_only_pdf() -> bytes:
    from fpdf import FPDF
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (600, 200), "white")
    ImageDraw.Draw(image).text((20, 80), "A scanned page with words in pixels only", fill="black")
    pdf = FPDF()
    pdf.add_page()
    pdf.image(image, x=10, y=10, w=180)
    return bytes(pdf.output())


def encrypted(pdf: bytes) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.encrypt(user_password="open-sesame", owner_password="owner", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def python_docx() -> bytes:
    import docx

    document = docx.Document()
    document.core_properties.title = "Lighthouse Log"
    document.core_properties.author = "Caroline Herschel"
    document.add_heading("Lighthouse Log", level=1)
    document.add_paragraph("The keeper writes down every ship that passes the point at night.")
    document.add_heading("Duties", level=2)
    for duty in ("Trim the wick", "Wind the clockwork", "Polish the lens"):
        document.add_paragraph(duty, style="List Bullet")
    document.add_heading("Ships seen", level=2)
    table = document.add_table(rows=3, cols=2)
    for row, values in zip(
        table.rows, (("Night", "Ships"), ("Monday", "4"), ("Tuesday", "7")), strict=True
    ):
        for cell, value in zip(row.cells, values, strict=True):
            cell.text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def build(folder: Path) -> Documents:
    """Every test document, in `folder`."""
    require_tools()
    (folder / "report.html").write_text(REPORT_HTML)
    paragraphs = "".join(f"<text:p>{p}</text:p>" for p in COLUMN_PARAGRAPHS)
    (folder / "columns.fodt").write_text(FODT.format(paragraphs=paragraphs))
    _libreoffice(folder, "docx:MS Word 2007 XML", folder / "report.html")
    (folder / "log.docx").write_bytes(python_docx())
    # python-docx's table has no borders: in the PDF it is text in columns.
    _libreoffice(
        folder, "pdf", folder / "report.docx", folder / "columns.fodt", folder / "log.docx"
    )
    (folder / "survey.pdf").write_bytes(fpdf_report())
    (folder / "scan.pdf").write_bytes(image_only_pdf())
    (folder / "locked.pdf").write_bytes(encrypted(fpdf_report()))
    return Documents(folder)


def pdftotext(path: Path) -> str:
    """poppler's reading of a PDF (the reference)."""
    done = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(path), "-"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return done.stdout.decode()


def docx_text(raw: bytes) -> str:
    """python-docx's reading of a DOCX: paragraphs, then table cells (the reference)."""
    import docx

    document = docx.Document(io.BytesIO(raw))
    parts = [p.text for p in document.paragraphs]
    for table in document.tables:
        parts.extend(cell.text for row in table.rows for cell in row.cells)
    return "\n".join(parts)


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def similarity(ours: str, reference: str) -> float:
    """How alike two texts are, word by word, in order (difflib's ratio, 0 to 1)."""
    return difflib.SequenceMatcher(None, words(ours), words(reference), autojunk=False).ratio()


def bag_similarity(ours: str, reference: str) -> float:
    """Word-bag overlap (F1): for texts whose parts come in another order (tables)."""
    mine, theirs = words(ours), words(reference)
    common = sum(min(mine.count(w), theirs.count(w)) for w in set(mine))
    return 2 * common / (len(mine) + len(theirs)) if mine or theirs else 1.0
