"""The inspector page in a real headless browser (Debian's Chromium): it shows the ranked titles the API returns.

The page is rendered twice by Chromium: its DOM after the page's own requests (the lists, in the API's order) and
a screenshot read back with Tesseract OCR (the titles are on screen, not only in the markup). Both programs come
from Debian's packages (`apt-get install chromium tesseract-ocr`; `.ci/run` installs them); without them the test
is skipped and says so.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import replace
from html.parser import HTMLParser

import pytest
from live_server import free_port, live_server

from llmrec.serve import create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TESSERACT = shutil.which("tesseract")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and TESSERACT),
    reason="needs Debian's chromium and tesseract-ocr (apt-get install chromium tesseract-ocr; .ci/run installs them)",
)


class _Lists(HTMLParser):
    """The text of each <li> directly under <ol id=...> (facts are a nested <div>, kept apart)."""

    def __init__(self) -> None:
        super().__init__()
        self.lists: dict[str, list[str]] = {}
        self._ol: str | None = None
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "ol":
            self._ol = dict(attrs).get("id")
            self.lists[self._ol or ""] = []
        elif tag == "li" and self._ol is not None:
            self.lists[self._ol].append("")
        elif tag == "div" and self._ol is not None:
            self._depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "ol":
            self._ol = None
        elif tag == "div" and self._depth:
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._ol is not None and not self._depth and self.lists[self._ol]:
            self.lists[self._ol][-1] += data


@pytest.fixture
def served_url(service):
    port = free_port()
    with live_server(create_app(replace(service.config, port=port), service), port) as (url, _, _):
        yield url


def _chromium(*args: str) -> str:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=20000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout


def test_the_inspector_shows_the_ranked_titles(served_url, service, tmp_path):
    import httpx

    user = service.dataset.user_ids[0]  # what the page asks for on load: its first user and adapter, k 10
    expected = httpx.post(served_url + "/v1/rank", json={"user_id": user, "k": 10, "explain": True}).json()
    titles = [it["title"] for it in expected["items"]]

    dom = _Lists()
    dom.feed(_chromium("--dump-dom", served_url + "/"))
    shown = [re.sub(r" \((up \d+|down \d+|=|new)\)$", "", t.strip()) for t in dom.lists["ranked"]]
    assert shown == titles
    assert [t.strip() for t in dom.lists["first"]] == [it["title"] for it in expected["first_stage"]]

    shot = tmp_path / "inspector.png"
    _chromium("--window-size=1400,1000", "--force-device-scale-factor=2", f"--screenshot={shot}", served_url + "/")
    text = subprocess.run([TESSERACT, str(shot), "-"], capture_output=True, text=True, timeout=120, check=True).stdout
    words = set(re.findall(r"[A-Za-z]{4,}", text))
    plain = [t for t in titles if re.fullmatch(r"[A-Za-z0-9 ()',.]+", t)][:4]
    assert plain, titles
    for title in plain:  # every longer word of each plain ranked title is read back from the pixels
        assert set(re.findall(r"[A-Za-z]{4,}", title)) <= words, (title, sorted(words))
