"""The landing page in a real browser: Debian's chromium, driven by playwright (never
`playwright install`: the browser is the distribution's). The demo scene renders, nothing
scrolls sideways at 1280 px, the summary is at the top, every fix and fingerprint is copied
whole by one click (user-select: all), and the page is screenshot. The screenshot goes to the
test's temporary directory: no test writes into tracked files. scripts/screenshot runs this
test with TOFU_SCREENSHOT=docs/img/landing.png to update the one docs/web.md shows."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from pilab.scene import Lab
from tests.kit.processes import ROOT, Exporter, wait_for

pytestmark = [pytest.mark.asyncio, pytest.mark.browser]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]



@pytest.mark.skipif(shutil.which(CHROMIUM) is None,
                    reason="Debian's chromium is missing (scripts/test installs it)")
async def test_landing_page_in_chromium(demo_lab: tuple[Lab, Path], tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.async_api")
    screenshot = ROOT / os.environ["TOFU_SCREENSHOT"] if "TOFU_SCREENSHOT" in os.environ \
        else tmp_path / "landing.png"
    lab, config = demo_lab
    exporter = Exporter(config, tmp_path)
    try:
        await exporter.start()
        lab.regenerate("prime-sec")  # the seed's story: PI still trusts the old certificate

        async def stale() -> bool:
            _, body, _ = await exporter.get("/api/v1/entries?state=mismatch")
            return len(json.loads(body)["data"]) >= 2
        await wait_for(stale, 60, step=0.5)
        async with playwright.async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 900})
                await page.goto(exporter.url + "/")
                assert "prime-tofu-exporter" in await page.title()
                # No horizontal scrolling at 1280 px.
                widths = await page.evaluate(
                    "[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
                assert widths[0] <= widths[1], widths
                # The states at a glance: overall counts and one summary row per store, on
                # the first screen.
                overall = page.locator("#overall")
                assert await overall.is_visible()
                assert (await overall.bounding_box())["y"] < 900  # type: ignore[index]
                text = await overall.inner_text()
                assert "mismatch" in text and "match" in text
                rows = page.locator("table.summary tr")
                assert await rows.count() == 1 + len(lab.pis)
                assert (await rows.nth(1).bounding_box())["y"] < 900  # type: ignore[index]
                # Each fix and each fingerprint is selected whole by one click.
                for selector in (".fix", ".fp"):
                    items = page.locator(selector)
                    n = await items.count()
                    assert n > 0, selector
                    for i in range(n):
                        el = items.nth(i)
                        await el.scroll_into_view_if_needed()
                        await el.click()
                        selected = await page.evaluate("window.getSelection().toString()")
                        assert selected.strip() == (await el.inner_text()).strip(), selector
                        if selector == ".fix":
                            assert selected.startswith("ncs certvalidation tofu-certs deletecert host ")
                            assert "\n" not in selected.strip()
                await page.evaluate("window.getSelection().removeAllRanges()")
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(screenshot), full_page=True)
            finally:
                await browser.close()
        assert screenshot.stat().st_size > 10_000
    finally:
        await exporter.stop()
