"""PDF and DOCX files in `fetch`: real files of several producers, served on loopback, read back
as Markdown whose text matches a reference extraction; unreadable ones fail as they should."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.settings import Settings
from tests.conftest import RunWorker
from tests.helpers import wait_for_job
from tests.worker import documents
from tests.worker.documents import Documents, bag_similarity, pdftotext, similarity
from tests.worker.file_server import FileServer, serve
from tests.worker.support import submit
from tests.worker.test_fetch import engine, fetch, fetch_error

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
FORMATS = ["markdown", "text", "metadata"]


@pytest.fixture(scope="session")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Documents:
    return documents.build(tmp_path_factory.mktemp("documents"))


@pytest.fixture
async def files(docs: Documents) -> AsyncIterator[FileServer]:
    named = {
        "report.pdf": PDF,
        "columns.pdf": PDF,
        "survey.pdf": PDF,
        "log.pdf": PDF,
        "scan.pdf": PDF,
        "locked.pdf": PDF,
        "report.docx": DOCX,
        "log.docx": DOCX,
    }
    served = {name: (docs.read(name), kind) for name, kind in named.items()}
    served["download"] = (docs.read("survey.pdf"), "application/octet-stream")
    served["untyped"] = (docs.read("log.docx"), "")
    async with serve(served) as server:
        yield server


async def read(settings: Settings, url: str, **overrides: Any) -> dict[str, Any]:
    async with engine(settings, **overrides) as ctx:
        return await fetch(ctx, url, formats=FORMATS)


async def test_a_libreoffice_pdf_keeps_headings_lists_and_tables(
    settings: Settings, files: FileServer, docs: Documents
) -> None:
    result = await read(settings, files.url("report.pdf"))
    markdown = result["markdown"]
    assert markdown.startswith("# Quarterly Report\n")
    assert "\n## Highlights\n\n- Revenue grew by twelve percent\n- Two new factories opened\n" in (
        markdown
    )
    assert "| Region | Revenue | Growth |\n| --- | --- | --- |\n| North | 1200 | 5% |" in markdown
    assert similarity(result["text"], pdftotext(docs.path("report.pdf"))) > 0.95
    meta = result["metadata"]
    assert (meta["title"], meta["author"], meta["pages"]) == ("Quarterly Report", "Ada Lovelace", 1)
    assert meta["content_type"] == PDF


async def test_two_columns_read_in_order(
    settings: Settings, files: FileServer, docs: Documents
) -> None:
    result = await read(settings, files.url("columns.pdf"))
    markdown = result["markdown"]
    assert markdown.startswith("# Two Columns\n")
    positions = [markdown.index(p) for p in documents.COLUMN_PARAGRAPHS]
    assert positions == sorted(positions)  # each paragraph whole, the columns in order
    assert similarity(result["text"], pdftotext(docs.path("columns.pdf"))) > 0.95


async def test_an_fpdf2_pdf_with_a_ruled_table(
    settings: Settings, files: FileServer, docs: Documents
) -> None:
    result = await read(settings, files.url("survey.pdf"))
    assert result["markdown"].startswith("# Harbour Survey\n\nThe survey counted every vessel")
    assert (
        "| Vessel | Count | Share |\n| --- | --- | --- |\n| Fishing | 412 | 61% |"
        in (result["markdown"])
    )
    assert similarity(result["text"], pdftotext(docs.path("survey.pdf"))) > 0.95
    assert result["metadata"]["author"] == "Mary Somerville"


async def test_a_table_without_borders_is_read_from_its_columns(
    settings: Settings, files: FileServer, docs: Documents
) -> None:
    result = await read(settings, files.url("log.pdf"))
    assert (
        "## Ships seen\n\n| Night | Ships |\n| --- | --- |\n| Monday | 4 |\n| Tuesday | 7 |"
        in (result["markdown"])
    )
    assert "- Trim the wick\n- Wind the clockwork" in result["markdown"]  # lists stay lists
    assert similarity(result["text"], pdftotext(docs.path("log.pdf"))) > 0.95


@pytest.mark.parametrize("name", ["report.docx", "log.docx"])
async def test_docx_of_two_producers(
    settings: Settings, files: FileServer, docs: Documents, name: str
) -> None:
    result = await read(settings, files.url(name))
    reference = documents.docx_text(docs.read(name))
    assert bag_similarity(result["text"], reference) > 0.95
    markdown = result["markdown"]
    if name == "log.docx":  # python-docx: Word's own heading and list styles
        assert markdown.startswith("# Lighthouse Log\n")
        assert "## Duties\n\n- Trim the wick\n- Wind the clockwork\n- Polish the lens" in markdown
        assert "| Night | Ships |\n| --- | --- |\n| Monday | 4 |\n| Tuesday | 7 |" in markdown
        assert result["metadata"]["author"] == "Caroline Herschel"
    else:
        assert "## Figures by region\n\n| Region | Revenue | Growth |" in markdown
        assert result["metadata"]["title"] == "Quarterly Report"
    assert result["metadata"]["content_type"] == DOCX


async def test_a_download_or_an_untyped_body_is_read_by_its_bytes(
    settings: Settings, files: FileServer
) -> None:
    download = await read(settings, files.url("download"))
    untyped = await read(settings, files.url("untyped"))
    assert download["metadata"]["content_type"] == PDF
    assert "| Ferry | 180 | 27% |" in download["markdown"]
    assert untyped["metadata"]["content_type"] == DOCX
    assert untyped["markdown"].startswith("# Lighthouse Log")


@pytest.mark.parametrize(
    ("name", "reason"),
    [("locked.pdf", "encrypted"), ("scan.pdf", "image_only")],
)
async def test_unreadable_documents_say_why(
    settings: Settings, files: FileServer, name: str, reason: str
) -> None:
    async with engine(settings) as ctx:
        error = await fetch_error(ctx, files.url(name))
    assert (error.code, error.retryable) == ("document_unreadable", False)
    assert error.details == {"reason": reason}
    assert reason.replace("_", "-") in error.message or reason.split("_")[0] in error.message


async def test_the_page_cap(settings: Settings, files: FileServer) -> None:
    async with engine(settings, document_max_pages=1) as ctx:
        error = await fetch_error(ctx, files.url("columns.pdf"))
    assert (error.code, error.details) == ("document_too_large", {"pages": 2, "max_pages": 1})


async def test_a_pdf_through_the_api_and_the_parse_pool(
    client: httpx.AsyncClient, auth: dict[str, str], files: FileServer, run_worker: RunWorker
) -> None:
    spec = {
        "kind": "fetch",
        "input": {
            "url": files.url("report.pdf"),
            "formats": ["markdown", "html", "metadata"],
            "extract": {"regions": {"selector": "td:first-child", "all": True}},
        },
    }
    async with run_worker():
        job = await wait_for_job(client, auth, await submit(client, auth, spec))
    assert job["status"] == "succeeded", job
    assert "| South | 950 | 12% |" in job["result"]["markdown"]
    assert "<h2>Highlights</h2>" in job["result"]["html"]
    assert job["result"]["extract"]["regions"] == ["Region", "North", "South", "East"]
    assert job["result"]["metadata"]["pages"] == 1


def test_the_real_pdfs_debian_ships() -> None:
    """pdfTeX manuals nobody here wrote: the text matches poppler's reading."""
    from worker.extract.docblocks import to_text
    from worker.extract.pdf import read_pdf

    found = [
        Path(p)
        for p in (
            "/usr/share/doc/libtasn1-doc/libtasn1.pdf",
            "/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf",
        )
        if Path(p).exists()
    ]
    if not found:
        pytest.skip("no PDF manuals under /usr/share/doc")
    documents.require_tools()
    for path in found:
        blocks, meta = read_pdf(path.read_bytes(), 500)
        assert similarity(to_text(blocks), pdftotext(path)) > 0.97, path
        assert meta["pages"] > 1
