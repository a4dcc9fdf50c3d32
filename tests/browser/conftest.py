"""End-to-end tests in a real headless Chromium (Playwright's sync API) against pytest-django's
`live_server`.

The system's Chromium is used (never a downloaded one). Every page a test opens is watched:
console errors, uncaught exceptions and requests to anything but the live server are collected
on the `Browser` helper so the test can assert there were none.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# PULSE_CHROMIUM points at another build (e.g. one unpacked where /usr/bin is read-only).
CHROMIUM = Path(os.environ.get("PULSE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium's own background connections make the sandbox refuse its sockets.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
MOBILE = {"width": 390, "height": 844}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if CHROMIUM.exists():
        return
    skip = pytest.mark.skip(
        reason=f"no Chromium at {CHROMIUM} (apt-get install chromium) for the browser tests"
    )
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="package")
def chromium(django_db_setup: None):
    """One Chromium for this package. Playwright's sync API keeps an event loop running in the
    main thread while it lives, and Django refuses ORM calls under a running loop; so the test
    database is created first, ORM calls are allowed only while Playwright lives, and Playwright
    stops when this package's tests end (nothing leaks into other tests or their subprocesses)."""
    from playwright.sync_api import sync_playwright

    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@dataclass
class Watched:
    """A browser context with its problems collected: console errors, page errors, and requests
    to anything but the live server."""

    base_url: str
    context: object
    page: object
    console_errors: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)

    def watch(self, page) -> None:
        def on_console(message) -> None:
            if message.type == "error":
                self.console_errors.append(f"{page.url}: {message.text}")

        def on_page_error(error) -> None:
            self.console_errors.append(f"{page.url}: uncaught {error}")

        page.on("console", on_console)
        page.on("pageerror", on_page_error)
        page.on("request", self._on_request)

    def _on_request(self, request) -> None:
        url = request.url
        if not (url.startswith(self.base_url) or url.startswith(("data:", "blob:"))):
            self.external_requests.append(url)

    def url(self, path: str) -> str:
        return self.base_url + path

    def shot(self, name: str) -> Path:
        """A full-page screenshot of the current page to test-artifacts/screenshots/<name>.png."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True, animations="disabled")
        return path

    def assert_clean(self) -> None:
        assert self.console_errors == [], "console errors:\n" + "\n".join(self.console_errors)
        assert self.external_requests == [], "requests left the live server:\n" + "\n".join(
            self.external_requests
        )


@pytest.fixture
def open_browser(chromium, live_server) -> Iterator:
    """open_browser(viewport=..., color_scheme=...) -> Watched; contexts are closed at teardown."""
    opened: list[Watched] = []

    def _open(viewport: dict | None = None, color_scheme: str = "light") -> Watched:
        context = chromium.new_context(
            base_url=live_server.url,
            viewport=viewport or DESKTOP,
            color_scheme=color_scheme,
            locale="en-US",
        )
        context.set_default_timeout(15_000)
        page = context.new_page()
        watched = Watched(base_url=live_server.url, context=context, page=page)
        watched.watch(page)
        opened.append(watched)
        return watched

    yield _open
    for watched in opened:
        watched.context.close()


@pytest.fixture
def browser(open_browser) -> Watched:
    """A desktop-sized, light-themed browser on the live server."""
    return open_browser()
