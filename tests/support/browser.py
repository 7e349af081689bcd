"""Pages in a real browser: Debian's Chromium, headless, driven by Playwright for Python.

Playwright is used only as a driver for the system binary (`executable_path`); its own browser downloads are never
used, as they cannot be fetched on these machines. Tests get a page that records every dialog, console message and
uncaught error, so a script that runs where it must not (an XSS payload) or a Content-Security-Policy violation
fails the test. Screenshots go to `test-artifacts/ui/`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Browser, ConsoleMessage, Dialog, Page, async_playwright
from tests.support.prometheus import REPO_ROOT

CHROMIUM_ENV = "SLO_GUARD_CHROMIUM"
"""Path of the Chromium binary; default `/usr/bin/chromium` (Debian's package), then `chromium` on PATH."""
ARTIFACTS = REPO_ROOT / "test-artifacts" / "ui"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 360, "height": 780}


def chromium() -> Path:
    """The system Chromium; skips the test, saying how to install it, when there is none."""
    candidates = [os.environ.get(CHROMIUM_ENV), "/usr/bin/chromium", shutil.which("chromium")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    pytest.skip(f"no Chromium: `apt-get install chromium` (make test does), or set {CHROMIUM_ENV}")


@contextlib.asynccontextmanager
async def browser() -> AsyncIterator[Browser]:
    binary = chromium()
    async with async_playwright() as playwright:
        # Tests run as root in CI, where Chromium's sandbox cannot start.
        launched = await playwright.chromium.launch(executable_path=binary, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class Watched:
    """A page and everything it said that a test may need to refuse."""

    page: Page
    dialogs: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    """Console messages of type error or warning, CSP violations among them."""
    errors: list[str] = field(default_factory=list)
    """Uncaught exceptions in the page's scripts."""

    def assert_quiet(self) -> None:
        """No dialog opened, nothing went wrong in a script, no CSP violation was reported."""
        assert (self.dialogs, self.errors, self.console) == ([], [], [])


@contextlib.asynccontextmanager
async def page(
    on: Browser, *, viewport: dict[str, int] = DESKTOP, color_scheme: str = "light"
) -> AsyncIterator[Watched]:
    context = await on.new_context(viewport=viewport, color_scheme=color_scheme)  # type: ignore[arg-type]
    watched = Watched(await context.new_page())

    async def dismiss(dialog: Dialog) -> None:
        watched.dialogs.append(f"{dialog.type}: {dialog.message}")
        await dialog.dismiss()

    def log(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            watched.console.append(message.text)

    watched.page.on("dialog", dismiss)
    watched.page.on("console", log)
    watched.page.on("pageerror", lambda error: watched.errors.append(str(error)))
    try:
        yield watched
    finally:
        await context.close()


async def screenshot(on: Page, name: str) -> Path:
    """The whole page as `test-artifacts/ui/<name>.png`."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await on.screenshot(path=path, full_page=True)
    return path
