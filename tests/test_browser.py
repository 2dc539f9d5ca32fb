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

from exporter.cli.demo import prepare
from tests.exporterkit import ROOT, Exporter, wait_for

pytestmark = pytest.mark.asyncio
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# The text of an element and the offsets where its rendered lines start: each character's
# box, a new line where a box sits lower than the one before.
LINE_STARTS = """el => {
  const chars = [], tops = [];
  const walk = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
  for (let n = walk.nextNode(); n; n = walk.nextNode()) {
    for (let i = 0; i < n.data.length; i++) {
      const r = document.createRange(); r.setStart(n, i); r.setEnd(n, i + 1);
      const box = r.getClientRects()[0];
      chars.push(n.data[i]); tops.push(box ? box.top : null);
    }
  }
  const starts = [];
  for (let i = 1; i < tops.length; i++)
    if (tops[i] !== null && tops[i - 1] !== null && tops[i] > tops[i - 1] + 2) starts.push(i);
  return [chars.join(''), starts];
}"""
SEPARATORS = set("._:/=,@- ")


async def assert_wraps_between_parts(page: object) -> None:
    """Entry keys, endpoints and subjects wrap after a separator, fingerprints between groups
    of 8 digits, never mid-part; and no cell's content sticks out of it."""
    wrapped = 0
    for selector in ("table.entries td.key", "table.entries .fp", ".fix"):
        cells = page.locator(selector)  # type: ignore[attr-defined]
        for i in range(await cells.count()):
            text, starts = await cells.nth(i).evaluate(LINE_STARTS)
            wrapped += bool(starts)
            for at in starts:
                ok = at % 8 == 0 if selector.endswith(".fp") else text[at - 1] in SEPARATORS
                assert ok, f"{selector} {text!r} wraps mid-part before {text[at:]!r}"
    assert wrapped, "nothing wrapped: the test proves nothing at this width"
    overflowing = await page.evaluate(  # type: ignore[attr-defined]
        "[...document.querySelectorAll('td')].filter(td => td.scrollWidth > td.clientWidth + 1)"
        ".map(td => td.innerText)")
    assert not overflowing, overflowing



@pytest.mark.skipif(shutil.which(CHROMIUM) is None,
                    reason="Debian's chromium is missing (scripts/test installs it)")
async def test_landing_page_in_chromium(tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.async_api")
    screenshot = ROOT / os.environ["TOFU_SCREENSHOT"] if "TOFU_SCREENSHOT" in os.environ \
        else tmp_path / "landing.png"
    lab, config = await prepare(tmp_path, fixed_ports=False)
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
                # Our help text quotes commands in backticks: shown as code, not as backticks.
                then = page.locator("h3:text-is('Then') + ul")
                assert "`" not in await then.inner_text()
                assert "prime-tofu-exporter check" in await then.locator("code").all_inner_texts()
                await assert_wraps_between_parts(page)
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(screenshot), full_page=True)
            finally:
                await browser.close()
        assert screenshot.stat().st_size > 10_000
    finally:
        await exporter.stop()
        await lab.stop()
