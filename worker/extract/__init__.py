"""Page extraction shared by the `fetch` and `render` engines: formats, metadata, schemas.

`build_result` is synchronous and picklable; run it with `parse_off_loop` so that parsing never
blocks the event loop.
"""

from worker.extract.document import build_from_bytes, build_result, document_kind
from worker.extract.pool import ParsePool, parse_off_loop
from worker.extract.schema import SchemaError

__all__ = [
    "ParsePool",
    "SchemaError",
    "build_from_bytes",
    "build_result",
    "document_kind",
    "parse_off_loop",
]
