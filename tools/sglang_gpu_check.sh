#!/usr/bin/env bash
# SGLang on a GPU machine: install it into its own venv, start `python -m sglang.launch_server` on a
# small model, run the real-server tests against it with `kind: sglang`, then the paper's
# recoverability scenario on a handful of problems. SGLang needs a GPU (its PyPI wheels pin a CUDA torch).
#
# Usage: bash tools/sglang_gpu_check.sh [MODEL]
#   MODEL: a hub id or a local folder (default: deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B, a small
#   thinking model the paper's protocol fits). Settings by environment: COLLAB_SGLANG_HOME (venv and
#   logs, default .cache/sglang), COLLAB_SGLANG_PORT (30000), COLLAB_SGLANG_PACKAGE (sglang==0.5.23),
#   COLLAB_SGLANG_PROBLEMS (5).
# Prints the relay and recoverability figures from their summary.json; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=${1:-deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B}
HOME_DIR=${COLLAB_SGLANG_HOME:-.cache/sglang}
PORT=${COLLAB_SGLANG_PORT:-30000}
PACKAGE=${COLLAB_SGLANG_PACKAGE:-sglang==0.5.23}
PROBLEMS=${COLLAB_SGLANG_PROBLEMS:-5}
URL="http://127.0.0.1:$PORT"
mkdir -p "$HOME_DIR"

command -v nvidia-smi >/dev/null && nvidia-smi -L || { echo "sglang_gpu_check: no GPU here" >&2; exit 2; }
python -m pip install -q -e ".[test]"
if [ ! -x "$HOME_DIR/venv/bin/python" ] || ! "$HOME_DIR/venv/bin/python" -c "import sglang" 2>/dev/null; then
  started=$SECONDS
  python -m venv "$HOME_DIR/venv"
  "$HOME_DIR/venv/bin/python" -m pip install -q "$PACKAGE"
  echo "installed $PACKAGE in $((SECONDS - started))s"
fi

started=$SECONDS
"$HOME_DIR/venv/bin/python" -m sglang.launch_server --model-path "$MODEL" --host 127.0.0.1 --port "$PORT" \
  --enable-metrics >"$HOME_DIR/server.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null || true' EXIT
until curl -sf "$URL/health" >/dev/null; do
  kill -0 "$SERVER" 2>/dev/null || { tail -50 "$HOME_DIR/server.log"; echo "the server exited" >&2; exit 1; }
  [ $((SECONDS - started)) -lt 1200 ] || { echo "the server was not healthy after 1200s" >&2; exit 1; }
  sleep 2
done
echo "SGLang $(curl -s "$URL/server_info" | python -c 'import json,sys; print(json.load(sys.stdin).get("version"))')" \
     "serving $MODEL at $URL (ready in $((SECONDS - started))s)"

# The same checks as against vLLM: relay end to end (every request extends its predecessor, reported
# cached tokens >= 0.95 of the ideal), stop strings, EOS, length, streaming, cancellation, shared prefixes.
export COLLAB_SERVER_URL=$URL COLLAB_SERVER_KIND=sglang COLLAB_SERVER_MODEL=$MODEL COLLAB_SERVER_TOKENIZER=$MODEL
COLLAB_REQUIRE_REAL_SERVER=1 COLLAB_FIGURES="$HOME_DIR/relay-figures.json" python -m pytest -q tests/test_real_server.py
echo "relay on SGLang: $(cat "$HOME_DIR/relay-figures.json")"

# The paper's recoverability test: solo stage (8 samples per problem), then own trace cut at
# 0/20/40/60/80 %, a distractor, and the continuation, on the first $PROBLEMS problems.
ENGINE="{\"kind\": \"sglang\", \"url\": \"$URL\", \"model\": \"$MODEL\"}"
python -m collab.cli simulate scenarios/paper/recoverability.yaml --quiet --out "$HOME_DIR/runs" \
  --limit "$PROBLEMS" --set "engines.model=$ENGINE" --set limits.max_tokens=8192
RUN=$(ls -td "$HOME_DIR"/runs/*/ | head -1)
python - "$RUN/summary.json" <<'EOF'
import json, sys

summary = json.load(open(sys.argv[1]))
print(json.dumps({k: summary.get(k) for k in ("episodes", "ok", "failed", "accuracy", "per_point", "tokens",
                                               "twin_tests")}, indent=1))
EOF
