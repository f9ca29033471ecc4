"""docs/settings.md, generated from the settings' own descriptions: `python -m shared.settings_doc
> docs/settings.md` (a test keeps the page in step with shared/settings.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

from shared.settings import Settings

HEADER = """# Settings

Generated from `shared/settings.py` (`python -m shared.settings_doc > docs/settings.md`). Every
setting is an environment variable `OUTRIDER_<NAME>`; a `.env` file is not read (use your
process manager). Every process and command reads the same settings with the same defaults.
Lists are comma-separated.

| variable | default | meaning |
|---|---|---|
"""


def _default(field: FieldInfo) -> str:
    value: Any = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, list):
        return f"`{','.join(map(str, value))}`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, Path):
        value = f"./{value}"
    return f"`{value}`"


def markdown() -> str:
    """The settings page: one row per setting, in the order they are declared."""
    rows = []
    for name, field in Settings.model_fields.items():
        meaning = (field.description or "").replace("|", "\\|")
        rows.append(f"| `OUTRIDER_{name.upper()}` | {_default(field)} | {meaning} |")
    return HEADER + "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
