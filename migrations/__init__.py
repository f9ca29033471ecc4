"""Alembic migrations; run them with `outrider migrate`."""
