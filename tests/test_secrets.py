"""A server that echoes the API key in its errors: the key appears in nothing written or printed (every HTTP engine)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from protocol_server import ProtocolServer

from collab.cli import main
from collab.log.secrets import MASK, Scrubber
from collab.log.store import RunStore

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-test-5f2e9c0b71d4a3"
VAR = "COLLAB_TEST_ECHOED_KEY"


@contextmanager
def serving(server: ProtocolServer) -> Iterator[ProtocolServer]:
    """The server on its own event loop in a thread, so the CLI can run its own loop here."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(30)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def files_under(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("kind", ["sglang", "openai", "llamacpp"])
def test_an_echoed_key_is_scrubbed_everywhere(kind: str, qwen, qwen_path: str, tmp_path: Path, capsys,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VAR, KEY)
    server = ProtocolServer(qwen, api_key=KEY, echo_auth=True, faults={"error": 0.3, "5xx": 0.2}, fault_seed=1)
    with serving(server):
        engine = {"kind": kind, "url": server.url, "tokenizer": qwen_path, "api_key_env": VAR, "retries": 1,
                  "backoff_s": 0.001, "health_timeout_s": 10}
        if kind == "openai":
            engine["model"] = "m"
        out = tmp_path / "runs"
        status = main(["simulate", str(ROOT / "scenarios/relay.yaml"), "--quiet", "--limit", "4", "--samples", "3",
                       "--out", str(out), "--set", f"engines.small={json.dumps(engine)}"])
    assert status == 0
    (run,) = out.iterdir()
    records = RunStore(run).episodes()
    failed = [r for r in records.values() if r.end and r.end.status == "failed"]
    assert failed, "some episodes met an error whose body echoed the key"
    assert any(MASK in (r.end.error or "") for r in failed if r.end), "the echoed key was recorded, blanked"
    episode = failed[0].id
    html = tmp_path / "episode.html"
    assert main(["show", str(run), "--episode", episode, "--html", str(html)]) == 0
    assert main(["show", str(run), "--episode", episode]) == 0
    assert main(["report", str(run)]) == 0
    assert main(["replay", str(run), "--static"]) == 0
    printed = capsys.readouterr()
    written = files_under(run) | files_under(tmp_path / "runs") | {html: html.read_bytes()}
    leaks = [str(path) for path, data in written.items() if KEY.encode() in data]
    assert not leaks, f"the key leaked into {leaks}"
    assert KEY not in printed.out and KEY not in printed.err


def test_the_scrubber_catches_escaped_forms() -> None:
    scrubber = Scrubber(['k"ey\\1', "short"[:3]])
    assert scrubber.text('a k"ey\\1 b') == f"a {MASK} b"
    assert scrubber.text(json.dumps({"m": 'k"ey\\1'})) == json.dumps({"m": MASK})
    assert scrubber.text("abc") == "abc", "values shorter than the minimum are not secrets"
