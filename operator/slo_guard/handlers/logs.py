"""Structured logs: one JSON object per line, carrying the SLO, target and reason fields callers attach."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

import aiohttp

from slo_guard.domain.timestamps import rfc3339

_STANDARD_ATTRIBUTES = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": rfc3339(datetime.fromtimestamp(record.created, UTC), timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            # Only plain values: kopf attaches whole settings objects that would bloat every line.
            if (
                key not in _STANDARD_ATTRIBUTES
                and not key.startswith("_")
                and isinstance(value, str | int | float | bool)
            ):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class ExpectedFailuresInOneLine(logging.Filter):
    """A traceback is for bugs: an expected failure (the network, a timeout) keeps only its one-line cause.

    kopf logs each retry of an API request at ERROR although it retries by design; that is a warning. Tracebacks of
    expected failures stay when the log level is DEBUG.
    """

    def __init__(self, *, keep_tracebacks: bool) -> None:
        super().__init__()
        self._keep_tracebacks = keep_tracebacks

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("kopf.") and record.levelno == logging.ERROR and _is_kopf_retry(record):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and not self._keep_tracebacks and _is_expected(error):
            record.msg, record.args = f"{record.getMessage()}: {type(error).__name__}: {error}", None
            record.exc_info = record.exc_text = None
        return True


def _is_kopf_retry(record: logging.LogRecord) -> bool:
    return isinstance(record.msg, str) and record.msg.startswith("Request attempt #")


def _is_expected(error: BaseException) -> bool:
    if isinstance(error, aiohttp.ClientError | TimeoutError | ConnectionError):
        return True
    # kopf's error for an API server answering 5xx; its class lives in a private module, so match it by name.
    return any(cls.__name__ == "APIServerError" for cls in type(error).__mro__)


def configure_logging(*, log_format: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ExpectedFailuresInOneLine(keep_tracebacks=level.upper() == "DEBUG"))
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
