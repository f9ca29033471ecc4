"""Domain logic both the API and the workers run (they may not import each other)."""
