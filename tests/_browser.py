"""Headless Chromium for the report tests: open an HTML file, screenshot it, read its load hook.

The reports lucyd writes set ``data-images-loaded="N/M"`` (and ``data-images-failed``) on
``<body>`` once the page has loaded; this helper returns those attributes. Tests skip with the
install command when no Chromium is on the PATH (``.ci/run`` installs it).
"""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium() -> str:
    """Path of a Chromium executable, or skip the test saying how to install one."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("headless browser test needs Chromium: apt-get update && apt-get install -y chromium")


class _BodyAttrs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.attrs: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        if tag == "body":
            self.attrs = {k: v or "" for k, v in attrs}


def open_in_chromium(
    html: Path, profile: Path, screenshot: Path | None = None, window: tuple[int, int] = (1200, 2000)
) -> tuple[str, str]:
    """Open ``html`` headless (optionally saving a screenshot of ``window`` size) and return
    the report's ``data-images-loaded`` and ``data-images-failed`` body attributes."""
    cmd = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-extensions", "--hide-scrollbars", f"--user-data-dir={profile}",
        "--virtual-time-budget=5000", "--dump-dom",
    ]
    if screenshot is not None:
        cmd += [f"--screenshot={screenshot}", f"--window-size={window[0]},{window[1]}"]
    proc = subprocess.run([*cmd, html.as_uri()], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    parser = _BodyAttrs()
    parser.feed(proc.stdout)
    assert "data-images-loaded" in parser.attrs, "the report's load hook did not run: " + proc.stdout[:500]
    return parser.attrs["data-images-loaded"], parser.attrs.get("data-images-failed", "")
