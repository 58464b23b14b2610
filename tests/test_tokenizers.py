"""Tokenizers: one interface, JSON round trip, Unicode-safe round trips (property-tested)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charrnn.errors import UserError
from charrnn.tokenizers import CharTokenizer, SubwordTokenizer, WordTokenizer, tokenizer_from_json

MIXED = "Hello, wörld! 你好，世界。🎉👩‍👩‍👧 e\u0301 ﷽\n\tTabs  and  spaces\n"


def test_char_tokenizer_handles_cjk_emoji_and_combining_marks() -> None:
    tok = CharTokenizer.build([MIXED])
    ids = tok.encode(MIXED)
    assert len(ids) == len(MIXED)
    assert tok.decode(ids.tolist()) == MIXED
    assert tokenizer_from_json(tok.to_json()).decode(ids.tolist()) == MIXED


def test_char_unknown_characters_error_lists_them_or_skip() -> None:
    tok = CharTokenizer.build(["abc"])
    with pytest.raises(UserError, match="'z'.*--unk skip"):
        tok.encode("abz")
    assert tok.decode(tok.encode("abz", unknown="skip").tolist()) == "ab"


def test_unknown_error_counts_distinct_items_with_the_right_plural() -> None:
    tok = CharTokenizer.build(["e "])
    with pytest.raises(UserError, match=r"^3 characters not in .*'h', 'l', 'o';"):
        tok.encode("hello")
    with pytest.raises(UserError, match=r"^1 character not in .*'z';"):
        tok.encode("zz ee z")
    words = WordTokenizer.build(["a b\n"])
    with pytest.raises(UserError, match=r"^1 word not in .*'hello';"):
        words.encode("hello a hello", unknown="error")


def test_word_stream_after_a_prime_puts_a_space_before_the_next_word() -> None:
    from charrnn.sample import primed_decoder

    tok = WordTokenizer.build(["the company said bread\n"])
    prime = tok.encode("the company said").tolist()
    decoder, shown = primed_decoder(tok, prime, True)
    assert shown + decoder.feed(tok.index["bread"]) == "the company said bread"
    chars = CharTokenizer.build(["ab"])  # chars: no separator added
    decoder, shown = primed_decoder(chars, [0], True)
    assert shown + decoder.feed(1) == "ab"


def test_char_lower_option() -> None:
    tok = CharTokenizer.build(["ABC abc"], lower=True)
    assert tok.vocab_size == 4 and tok.decode(tok.encode("CAB").tolist()) == "cab"


def test_word_tokenizer_eos_unk_min_count_and_max_vocab() -> None:
    text = "the cat sat\nthe dog sat\nthe end\n"
    tok = WordTokenizer.build([text], min_count=2)
    assert tok.token_strings()[:2] == ["<eos>", "<unk>"]
    assert tok.decode(tok.encode("the cat sat\n").tolist()) == "the <unk> sat\n"
    with pytest.raises(UserError, match="'cat'"):
        tok.encode("the cat", unknown="error")
    assert WordTokenizer.build([text], max_vocab=3).vocab_size == 3


def test_word_tokenizer_regex_split() -> None:
    tok = WordTokenizer.build(["don't stop, now!\n"], pattern=r"\w+|[^\w\s]")
    assert tok.decode(tok.encode("don't stop\n").tolist()) == "don ' t stop\n"
    with pytest.raises(UserError, match="not a valid regex"):
        WordTokenizer.build(["x"], pattern="(")


@pytest.fixture(scope="module")
def subword() -> SubwordTokenizer:
    text = ("the quick brown fox jumps over the lazy dog 0123456789\n" * 50
            + "你好世界，我们在这里。\n" * 20)
    return SubwordTokenizer.train([text], vocab_size=400)


def test_subword_round_trips_whitespace_newlines_and_unseen_characters(subword) -> None:
    text = "  the   fox\n\n你好 🎉 ünseen ☃\n"
    ids = subword.encode(text)
    assert subword.decode(ids.tolist()) == text
    stream = subword.stream_decoder()
    assert "".join(stream.feed(int(i)) for i in ids) + stream.flush() == text
    restored = tokenizer_from_json(subword.to_json())
    assert np.array_equal(restored.encode(text), ids)


def test_subword_vocab_size_too_small_is_a_user_error() -> None:
    with pytest.raises(UserError, match="too small"):
        SubwordTokenizer.train(["abc\n"], vocab_size=100)


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=200))
def test_char_round_trip_property(text: str) -> None:
    tok = CharTokenizer.build([text])
    assert tok.decode(tok.encode(text).tolist()) == text


@settings(max_examples=40, deadline=None)
@given(st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=200))
def test_subword_round_trip_property(subword, text: str) -> None:
    assert subword.decode(subword.encode(text).tolist()) == text


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(st.characters(exclude_categories=("Cs", "Zs", "Cc", "Zl", "Zp")),
                        min_size=1, max_size=8), min_size=1, max_size=20))
def test_word_round_trip_up_to_whitespace_property(words: list[str]) -> None:
    """Special tokens excluded: a literal `<eos>` in the text is a line end (PTB's convention)."""
    words = [w for w in words if w not in ("<eos>", "<unk>")] or ["x"]
    text = " ".join(words) + "\n"
    tok = WordTokenizer.build([text])
    assert tok.decode(tok.encode(text).tolist()).split() == text.split()


def test_subword_stream_after_a_prime_continues_the_text_unchanged(subword) -> None:
    from charrnn.sample import primed_decoder

    ids = subword.encode("the quick brown fox").tolist()
    decoder, shown = primed_decoder(subword, ids[:2], True)
    assert shown + "".join(decoder.feed(i) for i in ids[2:]) == "the quick brown fox"
