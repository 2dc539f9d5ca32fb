"""--web.route-prefix / --web.external-url: how the flags read (as Prometheus reads them), and
the basic-auth guard's open paths below the prefix. The routes and links themselves run behind
a real nginx in chromium (tests/test_browser.py)."""

from __future__ import annotations

import base64

import bcrypt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from exporter.cli import main as cli
from exporter.web.config import WebConfig
from exporter.web.guard import Guard
from exporter.web.options import web_paths


@pytest.mark.unit
@pytest.mark.parametrize(("prefix", "url", "want"), [
    (None, None, ("", "")),
    ("/tofu/", None, ("/tofu", "/tofu")),
    ("/", None, ("", "")),
    (None, "https://proxy.example.net/tofu/", ("/tofu", "/tofu")),   # the proxy passes the path on
    ("/", "https://proxy.example.net/tofu", ("", "/tofu")),           # the proxy strips it
    (None, "http://exporter.example.net:9877", ("", "")),
])
def test_route_prefix_defaults_to_the_external_urls_path(
        prefix: str | None, url: str | None, want: tuple[str, str]) -> None:
    assert web_paths(prefix, url) == want


@pytest.mark.unit
@pytest.mark.parametrize(("prefix", "url", "flag"), [
    ("tofu", None, "--web.route-prefix"), ("/a b", None, "--web.route-prefix"),
    ("/a?b", None, "--web.route-prefix"), ("//evil.example", None, "--web.route-prefix"),
    (None, "proxy.example.net/tofu", "--web.external-url"),
    (None, "ftp://proxy.example.net/", "--web.external-url"),
    (None, "https://proxy.example.net/tofu?x=1", "--web.external-url"),
])
def test_a_bad_prefix_or_url_is_refused_by_name(prefix: str | None, url: str | None, flag: str) -> None:
    with pytest.raises(ValueError, match=flag):
        web_paths(prefix, url)


def test_serve_refuses_a_bad_prefix_before_starting(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--web.route-prefix", "tofu"]) == 2
    assert "--web.route-prefix 'tofu'" in capsys.readouterr().err


async def test_healthy_stays_open_and_the_rest_needs_auth_below_the_prefix() -> None:
    users = {"u": bcrypt.hashpw(b"p", bcrypt.gensalt(4))}
    guard = Guard(WebConfig(users=users, excluded_paths=frozenset({"/api/v1/entries"})), "/tofu")
    app = web.Application(middlewares=guard.middlewares())

    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")
    for path in ("/tofu/-/healthy", "/tofu/metrics", "/tofu/api/v1/entries", "/-/healthy",
                 "/tofuX/-/healthy"):
        app.router.add_get(path, ok)
    async with TestClient(TestServer(app)) as client:
        async def status(path: str, auth: bool = False) -> int:
            token = base64.b64encode(b"u:p").decode()
            headers = {"Authorization": f"Basic {token}"} if auth else {}
            async with client.get(path, headers=headers) as r:
                return r.status
        assert await status("/tofu/-/healthy") == 200
        assert await status("/tofu/api/v1/entries") == 200  # auth_excluded_paths, below the prefix
        assert await status("/tofu/metrics") == 401
        assert await status("/tofu/metrics", auth=True) == 200
        # Outside the prefix nothing is open.
        assert await status("/-/healthy") == 401
        assert await status("/tofuX/-/healthy") == 401
