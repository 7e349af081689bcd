"""After a burst of allocations is freed, the operator's memory goes back to the OS, not only to its own heap."""

from __future__ import annotations

import resource
from pathlib import Path

from slo_guard.handlers.heap import malloc_trim

PAGE = resource.getpagesize()


def rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE


def test_memory_freed_after_a_burst_leaves_the_process_when_the_heap_is_trimmed() -> None:
    trim = malloc_trim()
    assert trim is not None, "Debian's glibc has malloc_trim"
    # Objects above 512 bytes come from malloc, not Python's own arenas; keeping every 50th stops the heap from
    # shrinking at its top by itself, as the long-lived objects of a running operator do.
    burst = [bytes(2048) for _ in range(100_000)]
    kept = burst[::50]
    before_free = rss_bytes()
    del burst
    freed_but_held = rss_bytes()
    trim()
    after_trim = rss_bytes()
    assert freed_but_held > before_free - 50 * 2**20, "glibc kept most of the 200 MB burst after it was freed"
    assert after_trim < freed_but_held - 100 * 2**20, "trimming gave at least 100 of its 200 MB back"
    assert len(kept) == 2_000
