"""The job error catalogue (shared/job_errors.py): complete, used, and what the docs say."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.job_errors import CATALOGUE, JobErrorCode, http_status_code, is_known, markdown
from worker.retry import JobError, classify, status_error

ROOT = Path(__file__).resolve().parents[2]
# A code written as text where an egress refusal (which becomes a job error) is made:
# Refusal("code", ...), EgressBlocked(..., code="code"). Job errors name a JobErrorCode member
# (mypy checks those); JobError("code", ...) with a literal is not written any more.
LITERAL = re.compile(r'Refusal\(\s*"([a-z0-9_]+)"|EgressBlocked\([^)]*code="([a-z0-9_]+)"')
JOB_ERROR_LITERAL = re.compile(r'JobError\(\s*"')


def source_codes() -> set[str]:
    found: set[str] = set()
    for package in ("worker", "shared"):
        for path in (ROOT / package).rglob("*.py"):
            for match in LITERAL.finditer(path.read_text()):
                found.add(match.group(1) or match.group(2))
    return found


def test_every_code_the_code_base_writes_is_in_the_catalogue() -> None:
    codes = source_codes()
    assert len(codes) >= 4, codes  # the pattern still finds them
    assert {code for code in codes if not is_known(code)} == set()
    literal = [
        str(path.relative_to(ROOT))
        for package in ("worker", "shared")
        for path in (ROOT / package).rglob("*.py")
        if JOB_ERROR_LITERAL.search(path.read_text())
    ]
    assert literal == [], "raise JobError(JobErrorCode.X, ...), not a string"


def test_every_member_is_described() -> None:
    assert set(CATALOGUE) == set(JobErrorCode)
    for info in CATALOGUE.values():
        assert info.meaning.endswith("."), info


def test_the_docs_page_is_generated_from_the_catalogue() -> None:
    page = (ROOT / "docs" / "errors.md").read_text()
    assert page == markdown(), "run: python -m shared.job_errors > docs/errors.md"


def test_an_unknown_code_is_refused_and_a_long_message_is_cut() -> None:
    with pytest.raises(ValueError, match="not a job error code"):
        JobError("no_such_code", "x", retryable=False)
    error = classify(ConnectionResetError("x" * 10_000))
    assert error.code == JobErrorCode.CONNECTION_ERROR
    assert len(error.message) <= 501


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [(404, "http_4xx", False), (429, "http_429", True), (503, "http_503", True),
     (501, "http_5xx", False), (304, "http_3xx", False), (408, "http_408", True)],
)  # fmt: skip
def test_http_statuses_map_to_their_family(status: int, code: str, retryable: bool) -> None:
    assert http_status_code(status) == code
    error = status_error(status, None)
    assert (error.code, error.retryable) == (code, retryable)
    assert is_known(code)
