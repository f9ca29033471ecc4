"""structlog, configured once per process: console in development, JSON in production."""

from __future__ import annotations

import logging
import sys

import structlog

from shared.settings import Settings

_configured = False


def configure_logging(settings: Settings) -> None:
    """Route stdlib and structlog records through one renderer; idempotent."""
    global _configured
    if _configured:
        return
    _configured = True
    shared_processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if settings.log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,  # a record below the level costs no processing
            *shared_processors,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
            foreign_pre_chain=shared_processors,
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(settings.log_level.upper())
    # arq logs every job with its arguments at INFO; ids only, but keep it quiet.
    logging.getLogger("arq").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger; events are dotted snake_case with key-values."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


def describe(exc: BaseException, limit: int = 200) -> str:
    """An exception for a log line's `error=`: its type, then its message when it has one
    (a TimeoutError's is empty, and `error=""` says nothing), at most `limit` characters."""
    text = str(exc)
    name = type(exc).__name__
    return (f"{name}: {text}" if text else name)[:limit]
