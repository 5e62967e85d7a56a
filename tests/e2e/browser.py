"""Headless Chromium (Debian's package) driven by Playwright, for the browser tests;
screenshots go to var/test-artifacts/<test>/ (or $CALLCENTER_TEST_ARTIFACTS)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from callcenter.settings import PROJECT_ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def artifacts(test_name: str) -> Path:
    base = Path(os.environ.get("CALLCENTER_TEST_ARTIFACTS") or PROJECT_ROOT / "var/test-artifacts")
    folder = base / test_name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@asynccontextmanager
async def chromium(*extra_args: str) -> AsyncIterator[Browser]:
    """Chromium headless; CI must have it (scripts/setup.sh installs it), elsewhere
    the test is skipped with the reason."""
    if not Path(CHROMIUM).is_file():
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: run scripts/setup.sh as root")
        pytest.skip("chromium is not installed (scripts/setup.sh installs it as root)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", *extra_args])
        try:
            yield browser
        finally:
            await browser.close()
