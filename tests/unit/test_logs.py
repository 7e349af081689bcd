"""Logs of `slo-guard run`: expected failures in one line, tracebacks only for bugs (or at DEBUG)."""

from __future__ import annotations

import io
import json
import logging
import sys

import aiohttp
import pytest

from slo_guard.handlers.logs import ExpectedFailuresInOneLine, JsonFormatter


def logged(
    logger: str, level: int, message: str, error: BaseException | None, *, keep_tracebacks: bool = False
) -> dict:
    """The JSON line one record becomes after the filter."""
    exc_info = None
    if error is not None:
        try:
            raise error
        except BaseException:
            exc_info = sys.exc_info()
    record = logging.LogRecord(logger, level, __file__, 1, message, None, exc_info)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ExpectedFailuresInOneLine(keep_tracebacks=keep_tracebacks))
    handler.handle(record)
    [line] = stream.getvalue().splitlines()
    return dict(json.loads(line))


def test_kopfs_retry_of_an_api_request_is_a_warning() -> None:
    entry = logged(
        "kopf._cogs.clients.watching", logging.ERROR, "Request attempt #2/9 failed; will retry: GET /x", None
    )
    assert entry["level"] == "WARNING"


@pytest.mark.parametrize(
    "error",
    [
        aiohttp.ClientConnectionError("Connect call failed"),
        TimeoutError("read timed out"),
        ConnectionRefusedError(111, "Connection refused"),
    ],
)
def test_an_expected_failure_keeps_its_cause_in_one_line_without_a_traceback(error: BaseException) -> None:
    entry = logged("kopf.objects", logging.ERROR, "Watching failed", error)
    assert "exception" not in entry
    assert entry["message"].startswith(f"Watching failed: {type(error).__name__}: ")
    assert str(error) in entry["message"]


def test_a_bug_keeps_its_traceback() -> None:
    entry = logged("slo_guard.runtime", logging.ERROR, "evaluation pass failed", KeyError("spec"))
    assert "Traceback" in entry["exception"]
    assert entry["message"] == "evaluation pass failed"


def test_at_debug_expected_failures_keep_their_traceback_too() -> None:
    entry = logged("kopf.objects", logging.ERROR, "Watching failed", TimeoutError("slow"), keep_tracebacks=True)
    assert "Traceback" in entry["exception"]
