"""docs/settings.md is generated from the settings, and every setting says what it does."""

from __future__ import annotations

from pathlib import Path

from shared.settings import Settings
from shared.settings_doc import markdown

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_described() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description, f"OUTRIDER_{name.upper()} has no description"
        assert field.description.rstrip().endswith((".", ")")), name


def test_the_settings_page_is_generated_from_the_settings() -> None:
    page = (ROOT / "docs" / "settings.md").read_text()
    assert page == markdown(), "run: python -m shared.settings_doc > docs/settings.md"
    assert "`OUTRIDER_DB_POOL_TIMEOUT_S` | `10` |" in page
