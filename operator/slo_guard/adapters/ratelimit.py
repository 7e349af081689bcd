"""A token bucket that spaces out writes, so a storm of decisions cannot flood the API server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class TokenBucket:
    """Lets `burst` calls through at once, then `rate` calls per second.

    Each `acquire()` reserves its token at once (the balance may go negative) and then sleeps until the
    token exists, so concurrent callers are spaced `1 / rate` seconds apart without a lock.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be above 0, got {rate}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._updated_at = clock()

    @property
    def tokens(self) -> float:
        """Tokens available now; negative while callers wait for reserved tokens."""
        self._refill()
        return self._tokens

    async def acquire(self) -> None:
        """Take one token, waiting as long as it takes to be refilled."""
        self._refill()
        self._tokens -= 1
        if self._tokens >= 0:
            return
        try:
            await self._sleep(-self._tokens / self.rate)
        except BaseException:
            # A cancelled caller never used its token: give it to the next one.
            self._tokens += 1
            raise

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._updated_at) * self.rate)
        self._updated_at = now
