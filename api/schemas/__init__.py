"""Request and response bodies of the HTTP API, one module per resource (job specs live in
shared/specs.py)."""
