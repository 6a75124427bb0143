"""A built viewer served from the HTTP port: its files, its routes answered with its
index.html, its app-config.js written for this service; a folder without index.html
is refused naming the option."""

from __future__ import annotations

import asyncio
import threading

import pytest
import requests
from starlette.applications import Starlette

from medcompute.server.dicomweb.listener import HttpListener
from medcompute.server.dicomweb.viewer import viewer_routes
from medcompute.server.errors import FailedPrecondition


def test_a_folder_without_index_html_is_refused(tmp_path):
    with pytest.raises(FailedPrecondition) as err:
        viewer_routes(tmp_path)
    assert err.value.field == "--http-viewer"
    assert err.value.message == (f"{tmp_path} has no index.html (expected a built viewer, "
                                 "e.g. OHIF's dist/ folder: make ohif)")
    assert viewer_routes(None) == []


@pytest.mark.timeout(60)
def test_files_routes_and_config(tmp_path):
    (tmp_path / "index.html").write_text("<html>viewer</html>")
    (tmp_path / "app.js").write_text("console.log(1)")
    (tmp_path / "app-config.js").write_text("window.config = {shipped: true};")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    listener = HttpListener(Starlette(routes=viewer_routes(tmp_path)), "127.0.0.1", 0)
    port = asyncio.run_coroutine_threadsafe(listener.start(), loop).result(30)
    try:
        base = f"http://127.0.0.1:{port}"
        assert requests.get(f"{base}/app.js", timeout=10).text == "console.log(1)"
        for route in ("/", "/viewer", "/viewer/sub?StudyInstanceUIDs=1.2"):
            assert requests.get(base + route, timeout=10).text == "<html>viewer</html>"
        config = requests.get(f"{base}/app-config.js", timeout=10)
        assert "shipped" not in config.text
        assert "window.location.origin + '/dicomweb'" in config.text
        assert config.headers["Content-Type"].startswith("text/javascript")
    finally:
        asyncio.run_coroutine_threadsafe(listener.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
