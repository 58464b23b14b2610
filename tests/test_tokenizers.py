"""Tokenizers: one interface, JSON round trip, Unicode-safe round trips (property-tested)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charrnn.errors import UserError
from charrnn.tokenizers import (
    UNK,
    CharTokenizer,
    SubwordTokenizer,
    WordTokenizer,
    tokenizer_from_json,
)

MIXED = "Hello, wörld! 你好，世界。🎉👩‍👩‍👧 e\u0301 ﷽\n\tTabs  and  spaces\n"


def test_char_tokenizer_handles_cjk_emoji_and_combining_marks() -> None:
    tok = CharTokenizer.build([MIXED])
    ids = tok.encode(MIXED)
    assert len(ids) == len(MIXED)
    assert tok.decode(ids.tolist()) == MIXED
    assert tokenizer_from_json(tok.to_json()).decode(ids.tolist()) == MIXED


def test_char_unknown_characters_error_lists_them_or_skip() -> None:
    tok = CharTokenizer.build(["abc"])
    with pytest.raises(UserError, match="'z'.*pass unknown skip"):
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
    from charrnn.lm.plain import encode_prime, primed_decoder

    tok = WordTokenizer.build(["the company said bread\n"])
    decoder, shown = primed_decoder(tok, encode_prime(tok, "the company said ", None))
    assert shown + decoder.feed(tok.index["bread"]) == "the company said bread"
    chars = CharTokenizer.build(["ab"])  # chars: no separator added
    decoder, shown = primed_decoder(chars, encode_prime(chars, "a", None))
    assert shown + decoder.feed(1) == "ab"


def test_word_prime_is_shown_as_typed_not_as_the_unk_and_lower_case_the_model_read() -> None:
    from charrnn.lm.plain import encode_prime, primed_decoder

    tok = WordTokenizer.build(["the company said bread\n"], lower=True)
    start = encode_prime(tok, "The Zorblax company\n", None)
    assert tok.decode(start.ids) == "the <unk> company\n"  # what the model reads
    decoder, shown = primed_decoder(tok, start)
    assert shown + decoder.feed(tok.index["bread"]) == "The Zorblax company\nbread"


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
    return SubwordTokenizer.train([text], vocab_size=380)


def test_subword_round_trips_whitespace_newlines_and_unseen_characters(subword) -> None:
    text = "  the   fox\n\n你好 🎉 ünseen ☃\n"
    ids = subword.encode(text)
    assert subword.decode(ids.tolist()) == text
    stream = subword.stream_decoder()
    assert "".join(stream.feed(int(i)) for i in ids) + stream.flush() == text
    restored = tokenizer_from_json(subword.to_json())
    assert np.array_equal(restored.encode(text), ids)


@pytest.mark.parametrize("text", ["\u2581", "a\u2581b", " \u2581\u2581the fox\u2581\n\u2581"])
def test_subword_round_trips_a_literal_space_mark(subword, text: str) -> None:
    """U+2581 is sentencepiece's own space mark: a literal one must come back as itself."""
    assert subword.decode(subword.encode(text).tolist()) == text


def test_subword_training_text_with_space_marks_round_trips() -> None:
    tok = SubwordTokenizer.train(["the\u2581fox and the dog\n" * 40], vocab_size=280)
    assert tok.decode(tok.encode("the\u2581fox the dog").tolist()) == "the\u2581fox the dog"


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
    from charrnn.lm.plain import Prime, primed_decoder

    ids = subword.encode("the quick brown fox").tolist()
    decoder, shown = primed_decoder(subword, Prime(ids[:2], "the quick"))
    assert shown + "".join(decoder.feed(i) for i in ids[2:]) == "the quick brown fox"


def test_word_pattern_that_can_match_empty_gives_no_empty_token() -> None:
    tok = WordTokenizer.build(["xx a xxx b x\n"], pattern="x*")
    assert "" not in tok.token_strings()
    assert tok.token_strings()[2:] == ["x", "xx", "xxx"]
    assert tok.decode(tok.encode("xx a x\n").tolist()) == "xx x\n"
    grouped = WordTokenizer.build(["don't stop\n"], pattern=r"(\w)\w*")  # whole match, not group
    assert grouped.token_strings()[2:] == ["don", "stop", "t"]


@pytest.mark.parametrize("ending", ["\r\n", "\x0b", "\x1c", "\u2028"])
def test_a_word_pattern_counts_the_words_it_encodes_whatever_the_line_ends(ending: str) -> None:
    """The vocabulary came from splitlines() (which also breaks at \r, \x0b, \u2028...) and
    encode splits at \n only: with --pattern [^ ]+ every CRLF line's last word was <unk>."""
    text = f"first citizen{ending}before we proceed{ending}\n"
    tok = WordTokenizer.build([text], pattern="[^ ]+")
    assert tok.index[UNK] not in tok.encode(text).tolist()


def test_subword_trains_on_one_line_longer_than_sentencepiece_takes() -> None:
    from charrnn.tokenizers.subword import MAX_SENTENCE_BYTES

    words = "the quick brown fox jumps over the lazy dog and then some ünïcödé words 你好 ".split()
    line = " ".join(words[i * 7 % len(words)] for i in range(60_000))  # one line, ~300 KB
    assert len(line.encode()) > 4 * MAX_SENTENCE_BYTES and "\n" not in line
    tok = SubwordTokenizer.train([line + "\n"], vocab_size=400)
    ids = tok.encode(line + "\n")
    assert tok.decode(ids.tolist()) == line + "\n" and len(ids) < len(line) / 2


def test_sentence_pieces_stay_below_the_byte_limit_and_cut_after_whitespace() -> None:
    from charrnn.tokenizers.subword import _sentence_pieces

    line = "ab " * 50 + "x" * 70 + " é" * 40
    pieces = list(_sentence_pieces(line, 64))
    assert "".join(pieces) == line
    assert all(len(p.encode()) < 64 for p in pieces)
    assert all(p.endswith(" ") or len(p) == 64 // 4 - 1 for p in pieces[:-1])  # words whole unless too long


def test_sentencepiece_failure_message_carries_its_reason() -> None:
    from charrnn.tokenizers.subword import _training_error

    with pytest.raises(UserError, match=r"could not train a subword model: \S"):
        SubwordTokenizer.train(["\n\n\n"], vocab_size=400)
    bare = _training_error("INTERNAL: src/x.cc(12) [!pieces.empty()] ", 2000)
    assert str(bare).endswith("src/x.cc(12) [!pieces.empty()]")


def test_subword_vocab_size_too_large_names_the_vocab_size_that_works() -> None:
    from charrnn.tokenizers.subword import _training_error

    text = "".join(chr(c) for c in range(0x4E00, 0x4E00 + 80)) + " abc def\n"
    with pytest.raises(UserError) as err:
        SubwordTokenizer.train([text * 3], vocab_size=300)
    message = str(err.value)
    assert "character_coverage" not in message
    least = int(message.split("pass vocab_size ")[1].split()[0])
    assert message.startswith("vocab_size 300 is too small for this text") and least > 300
    assert SubwordTokenizer.train([text * 3], vocab_size=least).vocab_size == least
    high = _training_error("INTERNAL: t.cc(1) [x] Vocabulary size is too high (3000). Please set "
                           "it to a value <= 1234.", 3001)
    assert "pass vocab_size 1235 or less" in str(high)


def test_a_vocab_size_below_the_floor_names_the_least_this_text_needs() -> None:
    """It said 'at least 260' first, and the text's true least (here above 260) only when 260
    was tried next."""
    wide = "".join(chr(c) for c in range(0x4E00, 0x4E00 + 80)) + " abc def\n"
    with pytest.raises(UserError) as err:
        SubwordTokenizer.train([wide * 3], vocab_size=40)
    least = int(str(err.value).split("pass vocab_size ")[1].split()[0])
    assert str(err.value).startswith("vocab_size 40 is too small for this text") and least > 260
    assert SubwordTokenizer.train([wide * 3], vocab_size=least).vocab_size == least
    with pytest.raises(UserError, match="need at least 265; pass vocab_size 265 or more"):
        SubwordTokenizer.train(["abc def\n" * 20], vocab_size=40)  # 256 + 7 + <unk> + newline
    assert SubwordTokenizer.train(["abc def\n" * 20], vocab_size=265, exact=False).vocab_size


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_a_vocab_size_the_text_cannot_fill_is_refused_naming_one_it_can(model_type) -> None:
    """sentencepiece's limit is soft: it stops where the text runs out of pieces. Asked for more,
    the run would silently get fewer; the error names the most it makes, which then works."""
    text = "the cat sat on the mat, the dog sat on the log.\n" * 40
    with pytest.raises(UserError, match="is too large for this text") as err:
        SubwordTokenizer.train([text], vocab_size=5000, model_type=model_type)
    most = int(str(err.value).split("pass vocab_size ")[1].split()[0])
    assert 260 <= most < 5000
    assert SubwordTokenizer.train([text], vocab_size=most, model_type=model_type).vocab_size == most
    # Not asked for (the default): the smaller vocabulary is kept.
    assert SubwordTokenizer.train([text], vocab_size=5000, model_type=model_type,
                                  exact=False).vocab_size == most


def test_the_default_vocab_size_shrinks_to_a_small_text_and_a_typed_one_is_refused(
        small_text, tmp_path) -> None:
    from helpers import run_cli

    out = run_cli("preprocess", small_text, "--level", "subword", "--out", tmp_path / "a").output
    assert "subword vocab" in out
    result = run_cli("preprocess", small_text, "--level", "subword", "--vocab-size", "5000",
                     "--out", tmp_path / "b", ok=False)
    assert result.exit_code == 2 and "--vocab-size 5000 is too large for this text" in result.output
    made = int(out.split("subword vocab ")[1].split()[0].replace(",", ""))
    result = run_cli("ngram", "train", tmp_path / "a", "--vocab-size", "2000", "--order", "2",
                     ok=False)  # a dataset folder: its size, not the option it recorded
    assert result.exit_code == 2 and f"(it was made with --vocab-size {made})" in result.output
    run_cli("ngram", "train", small_text, "--level", "subword", "--order", "2")  # now cached
    for size in ("2000", str(made + 1)):  # the default's value typed is asked for too, cached or not
        result = run_cli("ngram", "train", small_text, "--level", "subword", "--order", "2",
                         "--vocab-size", size, ok=False)
        assert result.exit_code == 2 and f"--vocab-size {size} " in result.output and \
            f"pass --vocab-size {made}" in result.output, result.output


def test_the_default_vocab_size_grows_to_what_a_large_alphabet_needs(tmp_path) -> None:
    """2000 pieces cannot hold 2,500 distinct characters (those of sentencepiece's coverage)
    and the 256 byte pieces: the default grows to the least that does; typed, it is refused."""
    from helpers import run_cli

    chars = [chr(c) for c in range(0x4E00, 0x4E00 + 2500)]
    text = tmp_path / "zh.txt"
    text.write_text("".join("".join(chars[i:i + 40]) + "。\n" for i in range(0, 2500, 40)
                            for _ in "ab"), encoding="utf-8")
    out = run_cli("preprocess", text, "--level", "subword", "--out", tmp_path / "a").output
    made = int(out.split("subword vocab ")[1].split()[0].replace(",", ""))
    assert made > 2000
    result = run_cli("preprocess", text, "--level", "subword", "--vocab-size", "2000",
                     "--out", tmp_path / "b", ok=False)
    assert result.exit_code == 2 and "--vocab-size 2000 is too small for this text" in result.output


def test_a_literal_eos_in_word_text_is_an_unknown_word_not_a_line_break() -> None:
    """'x <eos> y' scored as the two lines 'x' and 'y'."""
    tok = WordTokenizer.build(["x y\n"])
    ids = tok.encode("x <eos> y\n")
    assert ids.tolist() == [tok.index["x"], tok.index[UNK], tok.index["y"], tok.index["<eos>"]]
    with pytest.raises(UserError, match="1 word not in the model's vocabulary: '<eos>'"):
        tok.encode("x <eos>", unknown="error")


@pytest.mark.parametrize(("options", "said"), [
    ({"pattern": "zzq+"}, "pattern 'zzq+' matches no word of the training text"),
    ({"min_count": 1000}, "min_count 1000 keeps no word: the most frequent, 'the', appears 3 "
                          "times; give min_count 3 or less"),
])
def test_word_options_that_keep_no_word_are_refused(options, said) -> None:
    """They made a vocabulary of <eos> and <unk> alone: a model that learns only line breaks."""
    with pytest.raises(UserError, match=re.escape(said)):
        WordTokenizer.build(["the cat and the dog\nthe end\n"], **options)
    with pytest.raises(UserError, match="the training text has no words"):
        WordTokenizer.build([" \n\t\n"])


@pytest.mark.parametrize("model", ["!!!", ""])
def test_a_stored_subword_model_that_is_empty_or_not_base64_is_malformed(model: str) -> None:
    """'!!!' decoded to nothing, and sentencepiece then said 'Model is not initialized' at
    each call instead of one error when the checkpoint was read."""
    from charrnn.tokenizers import tokenizer_from_json

    with pytest.raises(UserError, match="stored subword tokenizer is malformed"):
        tokenizer_from_json({"level": "subword", "model": model})


def test_an_unknown_policy_that_is_none_of_them_is_refused() -> None:
    """generate(..., unknown="bogus") went on, and failed only where a character was unknown,
    with advice about --unk skip."""
    from charrnn.tokenizers import prime_policy

    with pytest.raises(UserError, match="must be error or skip, not 'bogus'"):
        prime_policy("char", "bogus")
    assert prime_policy("char", "skip") == "skip" and prime_policy("word", None) == "map"


def test_evaluate_run_checks_the_unknown_policy_even_where_it_takes_any_level(tiny_run: Path
                                                                            ) -> None:
    """compare asks evaluate_run not to refuse an idle policy, and 'bogus' then went on."""
    from charrnn.evaluation.lm import evaluate_run

    with pytest.raises(UserError, match="must be error or skip, not 'bogus'"):
        evaluate_run(str(tiny_run), tiny_run.parent, unknown="bogus", refuse_idle=False)
