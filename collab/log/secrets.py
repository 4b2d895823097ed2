"""Secret values (API keys) blanked from everything a run writes or shows, whatever a server echoed."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

from pydantic_core import PydanticSerializationError

from collab.events import AnyEvent, Event, parse_event

MASK = "[secret]"
MIN_SECRET = 4
"""Shorter values are not treated as secrets (blanking them would garble ordinary text)."""


class Scrubber:
    """Replaces every occurrence of the given secret values (and their JSON-escaped forms)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        raw = {s for s in secrets if s and len(s) >= MIN_SECRET}
        escaped = {json.dumps(s, ensure_ascii=True)[1:-1] for s in raw} | {json.dumps(s)[1:-1] for s in raw}
        self.secrets = sorted(raw | escaped, key=len, reverse=True)

    @classmethod
    def from_env(cls, names: Iterable[str]) -> Scrubber:
        """A scrubber for the values of these environment variables (unset ones are skipped)."""
        return cls(os.environ.get(name, "") for name in names)

    def text(self, text: str) -> str:
        """``text`` with every secret value blanked."""
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def line(self, event: Event) -> bytes:
        """The event as one scrubbed JSON line (lone surrogates, which UTF-8 cannot hold, become ``?``)."""
        return self.text(_json(event)).encode("utf-8", "replace") + b"\n"

    def event(self, event: AnyEvent) -> AnyEvent:
        """The event itself when it holds no secret, else a scrubbed copy."""
        if not self.secrets:
            return event
        text = _json(event)
        scrubbed = self.text(text)
        return event if scrubbed == text else parse_event(scrubbed.encode("utf-8", "replace"))


def _json(event: Event) -> str:
    try:
        return event.model_dump_json()
    except PydanticSerializationError:
        return json.dumps(event.model_dump(mode="json"), ensure_ascii=False)
