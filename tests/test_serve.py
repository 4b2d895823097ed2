"""``collab serve`` with a stand-in ``sglang.launch_server`` that answers ``/health``."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from collab.engines.http.serve import Launch, ServeError, launches, main, serve

FAKE_LAUNCH_SERVER = """\
import argparse, http.server, json, os, pathlib, sys

parser = argparse.ArgumentParser()
parser.add_argument("--model-path", required=True)
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--exit-with", type=int)
args, _ = parser.parse_known_args()
log = pathlib.Path(os.environ["FAKE_SGLANG_LOG"]) / f"{args.port}.json"
log.write_text(json.dumps({"argv": sys.argv[1:], "pid": os.getpid()}))
if args.exit_with is not None:
    sys.exit(args.exit_with)


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.HTTPServer(("127.0.0.1", args.port), Health).serve_forever()
"""


@pytest.fixture
def fake_sglang(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    package = tmp_path / "site" / "sglang"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "launch_server.py").write_text(FAKE_LAUNCH_SERVER)
    log = tmp_path / "log"
    log.mkdir()
    monkeypatch.setenv("PYTHONPATH", str(package.parent))
    monkeypatch.setenv("FAKE_SGLANG_LOG", str(log))
    return log


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_only_sglang_engines_with_model_and_port_are_launched() -> None:
    engines: dict[str, Any] = {
        "big": {"kind": "sglang", "model": "org/big", "port": 30001, "launch_args": ["--tp", 2, "--host=0.0.0.0"]},
        "remote": {"kind": "sglang", "model": "org/big", "url": "http://gpu:30000"},
        "mine": {"kind": "local", "model": "org/small", "port": 1},
    }
    assert launches(engines) == [Launch("big", "org/big", 30001, ("--tp", "2", "--host=0.0.0.0"))]
    big = launches(engines)[0]
    assert big.url == "http://127.0.0.1:30001"
    assert big.command("py") == ["py", "-m", "sglang.launch_server", "--model-path", "org/big", "--port", "30001",
                                 "--tp", "2", "--host=0.0.0.0"]  # fmt: skip


async def test_serve_launches_waits_prints_and_stops(fake_sglang: Path) -> None:
    ports = [free_port(), free_port()]
    args = ["--mem-fraction-static", "0.8"]
    engines = {
        f"e{i}": {"kind": "sglang", "model": f"org/m{i}", "port": p, "launch_args": args} for i, p in enumerate(ports)
    }
    lines: list[str] = []
    stop = asyncio.Event()
    task = asyncio.ensure_future(serve(engines, stop=stop, echo=lines.append, health_timeout_s=30))
    while not any("Ctrl-C" in line for line in lines):
        assert not task.done(), task.exception()
        await asyncio.sleep(0.05)
    logs = [json.loads((fake_sglang / f"{p}.json").read_text()) for p in ports]
    assert logs[0]["argv"] == ["--model-path", "org/m0", "--port", str(ports[0]), "--mem-fraction-static", "0.8"]
    assert all(f"ready at http://127.0.0.1:{p}" in "\n".join(lines) for p in ports)
    stop.set()
    await asyncio.wait_for(task, 30)
    assert all(gone(log["pid"]) for log in logs)


async def test_cancelling_serve_stops_the_servers(fake_sglang: Path) -> None:
    port = free_port()
    lines: list[str] = []
    task = asyncio.ensure_future(serve({"e": {"kind": "sglang", "model": "m", "port": port}}, echo=lines.append))
    while not any("Ctrl-C" in line for line in lines):
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gone(json.loads((fake_sglang / f"{port}.json").read_text())["pid"])


async def test_a_server_that_dies_is_reported(fake_sglang: Path) -> None:
    engines = {"e": {"kind": "sglang", "model": "m", "port": free_port(), "launch_args": ["--exit-with", "3"]}}
    with pytest.raises(ServeError, match="'e' exited with status 3"):
        await serve(engines, echo=lambda line: None)


def test_main_reports_nothing_to_launch(capsys: pytest.CaptureFixture[str]) -> None:
    assert main({"e": {"kind": "sglang", "url": "http://h:1"}}, python=sys.executable) == 1
    assert "nothing to launch" in capsys.readouterr().err
