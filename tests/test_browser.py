"""The landing page in a real browser: Debian's chromium, driven by playwright (never
`playwright install`: the browser is the distribution's). The demo scene renders, nothing
scrolls sideways at 1280 px, the summary is at the top, every fix and fingerprint is copied
whole by one click (user-select: all), and the page is screenshot. The screenshot goes to the
test's temporary directory: no test writes into tracked files. scripts/screenshot runs this
test with TOFU_SCREENSHOT=docs/img/landing.png to update the one docs/web.md shows."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from exporter.cli.demo import prepare
from tests.kit.lab import free_port
from tests.kit.processes import ROOT, Exporter, wait_for

pytestmark = [pytest.mark.asyncio, pytest.mark.browser]
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


NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


@contextlib.contextmanager
def nginx_proxy(tmp: Path, port: int, locations: str) -> Iterator[None]:
    """Debian's nginx on a loopback port with these `location` blocks (a reverse proxy)."""
    (tmp / "nginx.conf").write_text(f"""
daemon off; master_process on; worker_processes 1;
pid {tmp}/nginx.pid; error_log {tmp}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
    server {{ listen 127.0.0.1:{port}; {locations} }}
}}
""")
    proc = subprocess.Popen([NGINX, "-p", str(tmp), "-c", str(tmp / "nginx.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, f"nginx exited: {(tmp / 'error.log').read_text(errors='replace')}"
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            assert time.monotonic() < deadline, "nginx not listening"
            time.sleep(0.1)
        yield
    finally:
        proc.send_signal(signal.SIGQUIT)  # graceful stop: the worker exits too
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Prefixed(Exporter):
    """An exporter whose routes live under `prefix` (the kit's requests go there)."""

    def __init__(self, config: Path, workdir: Path, prefix: str, extra_args: tuple[str, ...]) -> None:
        super().__init__(config, workdir, extra_args=extra_args)
        self.prefix = prefix

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}"


@pytest.mark.skipif(shutil.which(CHROMIUM) is None or not os.path.exists(NGINX),
                    reason="Debian's chromium or nginx is missing (scripts/test installs them)")
async def test_landing_page_behind_a_path_prefixed_reverse_proxy(tmp_path: Path) -> None:
    """nginx serves two exporters under paths: /tofu/ passed on as it is (the exporter's
    --web.external-url has that path, so every route lives under /tofu), and /strip/ with the
    path stripped (--web.route-prefix / and the external URL's path for the links). In
    chromium, through the proxy, every link of the page leads under the proxy's path and
    answers; every route answers there."""
    playwright = pytest.importorskip("playwright.async_api")
    lab, config = await prepare(tmp_path / "lab", fixed_ports=False)
    port = free_port()
    ext = f"http://127.0.0.1:{port}"
    kept = Prefixed(config, tmp_path, "/tofu", ("--web.external-url", f"{ext}/tofu/"))
    (tmp_path / "strip").mkdir()
    stripped = Prefixed(config, tmp_path / "strip", "", ("--web.external-url", f"{ext}/strip/",
                                                         "--web.route-prefix", "/"))
    (tmp_path / "nginx").mkdir()
    locations = (f"location /tofu/ {{ proxy_pass http://127.0.0.1:{kept.port}; }}"
                 f"location /strip/ {{ proxy_pass http://127.0.0.1:{stripped.port}/; }}")
    try:
        await asyncio.gather(kept.start(), stripped.start())
        # The routes live under the prefix only; the bare root leads to the page.
        assert (await kept.get("/metrics"))[0] == 200
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{kept.port}/metrics") as r:
                assert r.status == 404
            async with s.get(f"http://127.0.0.1:{kept.port}/", allow_redirects=False) as r:
                assert r.status == 302 and r.headers["Location"] == "/tofu/"
        with nginx_proxy(tmp_path / "nginx", port, locations):
            async with playwright.async_playwright() as p:
                browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                try:
                    for path in ("/tofu", "/strip"):
                        await _links_lead_under(browser, ext + path)
                finally:
                    await browser.close()
    finally:
        await asyncio.gather(kept.stop(), stripped.stop())
        await lab.stop()


async def _links_lead_under(browser: Any, base: str) -> None:
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    answer = await page.goto(base + "/")
    assert answer.status == 200 and "prime-tofu-exporter" in await page.title()
    hrefs = await page.eval_on_selector_all("a[href]", "els => els.map(a => a.href)")
    links = {h.split("#")[0] for h in hrefs if not h.startswith(base + "/#")}
    assert {f"{base}/metrics", f"{base}/api/v1/entries", f"{base}/api/v1/history",
            f"{base}/-/healthy", f"{base}/-/ready"} <= links, links
    assert any("/api/v1/entries?store=" in h for h in links), links
    for href in sorted(links):
        assert href.startswith(base + "/"), href
        got = await page.request.get(href)
        assert got.status == 200, (href, got.status)
    # Followed in the browser: the metrics link shows the exposition.
    await page.click("text=Metrics")
    await page.wait_for_url(f"{base}/metrics")
    assert "tofu_store_up" in await page.content()
    for route in ("/probe?target=prime-pri", "/-/ready"):
        got = await page.request.get(base + route)
        assert got.status == 200 and await got.text(), route
    # The bare prefix leads to the page too.
    assert (await page.goto(base)).url == base + "/"
    await page.close()
