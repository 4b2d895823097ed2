"""The shared trace: token-exact append-only views and truncation at boundaries."""

from __future__ import annotations

import pytest

from collab.engines.tokenizers import ByteTokenizer, load_tokenizer
from collab.trace import Span, Trace, boundary_before, cut, ends_sentence

TEXT = "First we add. Then we multiply the terms! Is it right? Yes.\n\nNew paragraph here. Last one."


def test_views_are_append_only_and_keep_author_ids() -> None:
    tok = ByteTokenizer()
    trace = Trace("What is 1+1?")
    prompt = list(trace.input_ids(tok))
    own = [72, 105]  # the author's exact ids, kept even if the text would encode otherwise
    trace.append(Span("a", "generated", "Hi", {tok.key: own}))
    first = list(trace.input_ids(tok))
    assert first == prompt + own
    trace.append(Span("b", "injected", " there"))
    second = list(trace.input_ids(tok))
    assert second[: len(first)] == first and second[len(first):] == tok.encode(" there")
    assert trace.spans[1].ids[tok.key] == tok.encode(" there")
    assert trace.text == "Hi there"


def test_other_vocabulary_tokenizes_each_span_once(shared) -> None:
    qwen = load_tokenizer(str(shared / "tokenizers" / "qwen2.5"))
    trace = Trace("Compute 2+2.")
    trace.append(Span("a", "generated", "We add two", {"bytes": [1, 2, 3]}))
    trace.append(Span("b", "generated", " and two.", {}))
    ids = trace.input_ids(qwen)
    expected = qwen.render_prompt("Compute 2+2.") + qwen.encode("We add two") + qwen.encode(" and two.")
    assert ids == expected
    assert trace.spans[0].ids["bytes"] == [1, 2, 3]


def test_boundaries() -> None:
    assert TEXT[: boundary_before(TEXT, 30, "sentence")] == "First we add."
    assert TEXT[: boundary_before(TEXT, 70, "paragraph")].endswith("Yes.\n\n")
    assert boundary_before(TEXT, 5, "sentence") == 0
    assert boundary_before(TEXT, 17, "token") == 17
    assert ends_sentence("It is 4.") and ends_sentence("line\n") and not ends_sentence("It is")


def test_cut_moves_back_to_a_sentence_end() -> None:
    tok = ByteTokenizer()
    text, ids = cut(TEXT, 0.5, tok)
    assert text == "First we add. Then we multiply the terms!"
    assert ids == tok.encode(text)
    assert len(ids) <= 0.5 * len(tok.encode(TEXT))
    assert cut(TEXT, 0.0, tok) == ("", [])
    assert cut(TEXT, 1.0, tok)[0] == TEXT
    assert cut(TEXT, 0.5, tok, "token")[0] == TEXT[: round(0.5 * len(TEXT))]


def test_cut_in_real_tokens(shared) -> None:
    qwen = load_tokenizer(str(shared / "tokenizers" / "qwen2.5"))
    full = qwen.encode(TEXT)
    text, ids = cut(TEXT, 0.6, qwen)
    assert ids == full[: len(ids)] and len(ids) <= round(0.6 * len(full))
    assert text.endswith((".", "!", "?")) and TEXT.startswith(text)


@pytest.mark.parametrize("text, expected", [
    ("We get\n\\[ x = 1. \\]\nSo y = 2. Then more", "We get\n\\[ x = 1. \\]\nSo y = 2."),
    ("First. $$ a. b $$ and more text here", "First."),
    ("Open: \\[ x = 1.\n y = 2. and still inside", ""),
    ("one line\nanother line\nmore", ""),
    ("Para one\n\nPara two here", "Para one\n\n"),
])
def test_sentence_ends_skip_display_math_and_single_line_breaks(text: str, expected: str) -> None:
    assert text[: boundary_before(text, len(text) - 1, "sentence")] == expected
