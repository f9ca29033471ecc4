"""Page extraction shared by the `fetch` and `render` engines: formats, metadata, schemas.

document.py builds a result (`build_result`, `build_from_bytes`): synchronous and picklable, run
through pool.py's `parse_off_loop` so that parsing never blocks the event loop. content.py and
fidelity.py make the main content's Markdown, schema.py runs `extract` rules.
"""
