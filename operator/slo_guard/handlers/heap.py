"""Giving freed heap memory back to the OS.

glibc keeps memory that Python freed inside its heaps for reuse, so after a burst (a cold start runs thousands of
first passes) the process's RSS stays at the burst's high-water mark. `malloc_trim` returns the free pages.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

logger = logging.getLogger("slo_guard.heap")


def malloc_trim() -> Callable[[], int] | None:
    """glibc's `malloc_trim(0)`; None on a C library without it (musl, macOS)."""
    name = ctypes.util.find_library("c")
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    if trim is None:
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: int(trim(0))


async def trim_heap_forever(every: float) -> None:
    trim = malloc_trim()
    if trim is None:
        logger.info("no malloc_trim in this C library: freed heap memory stays with the process")
        return
    while True:
        await asyncio.sleep(every)
        trim()
