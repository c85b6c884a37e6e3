"""``itap serve``: the console in a browser through textual-serve. A real server on a
free port: the page loads over HTTP, and its websocket answers a ping and streams the
console's screen."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp
import psutil
import pytest
from _sites import env_of, small_config

from itap_engine.config import load_settings
from itap_engine.engine.core import EngineCore
from itap_tui import cli

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on {port}")


async def talk(port: int) -> tuple[list, bytes]:
    """Ping the websocket, then read the console's output until its status line shows."""
    texts: list = []
    screen = b""
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"ws://127.0.0.1:{port}/ws?width=100&height=30") as ws,
    ):
        await ws.send_json(["ping", "itap-test"])
        deadline = asyncio.get_running_loop().time() + 90
        width = 100
        while asyncio.get_running_loop().time() < deadline and not (
            texts and b"ATTACHED" in screen and b"3 devices" in screen
        ):
            try:
                message = await ws.receive(timeout=5)
            except TimeoutError:
                # the console sends only what changed: a resize makes it repaint the whole screen
                width = 201 - width
                await ws.send_json(["resize", {"width": width, "height": 30}])
                continue
            if message.type == aiohttp.WSMsgType.TEXT:
                texts.append(message.json())
            elif message.type == aiohttp.WSMsgType.BINARY:
                screen += message.data
            else:
                break
    return texts, screen


def test_the_page_loads_and_the_websocket_runs_the_console(tmp_path: Path) -> None:
    folder = tmp_path / "site"
    core = EngineCore(load_settings(small_config(folder)))
    core.bootstrap()
    core.close()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "itap_tui.cli", "serve", "--attach", "--port", str(port)],
        env=env_of(folder),
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port, server)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as response:
            assert response.status == 200
            page = response.read().decode()
        assert f'data-session-websocket-url="ws://127.0.0.1:{port}/ws"' in page and "ITAP" in page
        texts, screen = asyncio.run(talk(port))
        assert ["pong", "itap-test"] in texts
        assert b"ATTACHED" in screen and b"3 devices" in screen, screen[-2000:]
    finally:
        children = psutil.Process(server.pid).children(recursive=True)
        server.terminate()
        server.communicate(timeout=30)
        _, alive = psutil.wait_procs(children, timeout=30)
        for process in alive:
            process.kill()
    assert server.returncode == 0
    assert not alive, "the console a browser tab ran outlived the server"


def test_serve_listens_on_localhost_by_default_and_names_a_missing_extra(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    args = cli.build_parser().parse_args(["serve"])
    assert (args.host, args.port, args.attach) == ("127.0.0.1", 8000, False)
    monkeypatch.setitem(sys.modules, "textual_serve.server", None)  # as if the extra were not installed
    monkeypatch.setitem(sys.modules, "textual_serve", None)
    assert cli.main(["serve", "--config", str(Path(__file__).resolve().parents[2] / "config.toml")]) == 2
    assert capsys.readouterr().err.strip() == (
        "itap: error: itap serve needs textual-serve: pip install 'itap[serve]' (or pip install textual-serve)"
    )


def test_a_browser_tab_counts_as_a_terminal(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(sys, "stdin", None)  # textual-serve gives the console pipes, not a terminal
    assert not cli.has_terminal()
    monkeypatch.setenv("TEXTUAL_DRIVER", "textual.drivers.web_driver:WebDriver")
    assert cli.has_terminal()
