"""A stand-in judge worker for pool tests: replies ``{"echo": "x" * size}`` to ``{"size": N}``."""

import json
import sys

sys.stdout.buffer.write(b'{"ready": true}\n')
sys.stdout.flush()
for line in sys.stdin.buffer:
    sys.stdout.buffer.write(json.dumps({"echo": "x" * json.loads(line)["size"]}).encode() + b"\n")
    sys.stdout.flush()
