"""A judge worker process: JSON tasks on stdin, one JSON reply per line on stdout.

Run by :class:`collab.judge.pool.WorkerPool` as ``python -m collab.judge.worker``. Stray output of
libraries goes to stderr so the reply channel stays clean.
"""

from __future__ import annotations

import json
import logging
import os
import sys


def main() -> None:
    """Grade requests from stdin, one JSON line each, answering on stdout."""
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    logging.disable(logging.WARNING)  # Math-Verify warns once that its own (signal) timeouts are off

    from collab.judge.answers import run_task

    run_task({"op": "grade", "response": "\\boxed{1}", "gold": "1", "thinking": False})  # import and warm up
    replies.write(b'{"ready": true}\n')
    for line in sys.stdin.buffer:
        try:
            reply = run_task(json.loads(line))
        except Exception as error:  # reported to the caller as an unjudged check
            reply = {"error": f"{type(error).__name__}: {error}"[:500]}
        replies.write(json.dumps(reply).encode() + b"\n")


if __name__ == "__main__":
    main()
