"""The client's version: the API's too (one VERSION file; the server's pyproject reads it)."""

from importlib.resources import files

__version__ = files("outrider_client").joinpath("VERSION").read_text().strip()
