"""Screenshots of the console with image results, at desktop and phone width: docs/console-desktop.png, docs/console-phone.png.

Run: .venv/bin/python scripts/console_screenshots.py   (needs Debian's chromium: apt-get install -y chromium)

It serves examples/multimodal with its objects from a temporary data directory, searches it by picture (the
example's blue square) in headless Chromium, and saves the page.  The tests (tests/test_console.py) drive the
browser with the same setup (``launch``), so what is pictured here is what they check.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
MULTIMODAL = ROOT / "examples" / "multimodal"
CHROMIUM = "/usr/bin/chromium"
# Headless, and nothing of Chromium's own that would call home (updates, sync, field trials, QUIC probes).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
QUERY_TITLE = "Blue square on black"
READY_TIMEOUT_S = 60.0


def launch(playwright: Any) -> Any:
    """Debian's Chromium driven by Playwright: no browser is ever downloaded."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def example_image(title: str) -> bytes:
    """The PNG bytes of the multimodal example's object with this title."""
    for line in (MULTIMODAL / "objects.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip() and (found := json.loads(line))["properties"]["title"] == title:
            return base64.b64decode(found["properties"]["image"])
    raise LookupError(f"no object titled {title!r} in {MULTIMODAL / 'objects.jsonl'}")


@contextmanager
def serving_example(data: Path, port: int) -> Iterator[str]:
    args = [sys.executable, "-m", "searchd", "serve", str(MULTIMODAL), "--data", str(data), "--host", "127.0.0.1", "--port", str(port)]
    args += ["--grpc-port", "0", "--load", str(MULTIMODAL / "objects.jsonl")]
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                if httpx.get(f"{url}/v1/.well-known/ready", timeout=1.0, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"searchd did not become ready on {url}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def capture(url: str, image: Path, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
                page = browser.new_page(viewport=viewport, color_scheme="light")
                page.goto(f"{url}/console#search")
                page.set_input_files("#search-image", str(image))
                page.wait_for_selector(".picked img")
                page.fill("#search-limit", "8")
                page.dispatch_event("#search-limit", "change")
                page.click("#search-run")
                page.wait_for_function("() => [...document.querySelectorAll('#results img.thumb')].length >= 8 && [...document.querySelectorAll('#results img.thumb')].every(i => i.complete && i.naturalWidth > 0)")
                if name == "phone":  # the results, below the form in one column
                    page.locator("#search-status").evaluate("e => e.scrollIntoView()")
                page.screenshot(path=str(out / f"console-{name}.png"))
                page.close()
        finally:
            browser.close()


def main() -> None:
    out = ROOT / "docs"
    port = int(os.environ.get("SEARCHD_SCREENSHOT_PORT", "18090"))
    with tempfile.TemporaryDirectory() as scratch:
        image = Path(scratch) / "query.png"
        image.write_bytes(example_image(QUERY_TITLE))
        with serving_example(Path(scratch) / "data", port) as url:
            capture(url, image, out)
    print(f"wrote {out / 'console-desktop.png'} and {out / 'console-phone.png'}")


if __name__ == "__main__":
    main()
