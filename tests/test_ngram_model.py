"""The estimator against hand computation, and its distributions against the laws of probability."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charrnn.errors import UserError
from charrnn.ngram.build import build_model
from charrnn.ngram.kneser_ney import discounts_from, parse_prune
from charrnn.tokenizers import CharTokenizer


def char_model(text: str, order: int, lines: bool = False, prune=None, fallback=True):
    tok = CharTokenizer.build([text])
    return build_model(tok.encode(text), tok, order, lines, prune, fallback), tok


def test_hand_computed_trigram_one_stream():
    """'abracadabr' (10 tokens), order 3, one stream: every number below is worked by hand.

    Stream: <s> a b r a c a d a b r. Adjusted counts: unigrams a=4 (left of a: <s> r c d),
    b=r=c=d=1; bigrams <s>a=1 (raw, starts with <s>), ab=2 (<s>ab, dab), br=ra=ac=ca=ad=da=1;
    trigrams (raw) abr=2, the other seven 1. No order has a count-3 n-gram, so every order
    falls back to the explicit discounts D1=0.5, D2=1, D3+=1.5.
    Unigrams: sum a = 8, gamma() = (1.5 + 4 * 0.5) / 8 = 0.4375, uniform over 5 words:
      p(a) = (4 - 1.5)/8 + 0.4375/5 = 0.4,   p(b) = p(r) = p(c) = p(d) = 0.5/8 + 0.0875 = 0.15.
    Bigrams: context a has ab=2, ac=1, ad=1: gamma(a) = (1 + 0.5 + 0.5)/4 = 0.5,
      p(b|a) = 1/4 + 0.5 * 0.15 = 0.325,  p(c|a) = p(d|a) = 0.5/4 + 0.075 = 0.2;
      contexts b, r, c, d, <s> each have one extension of count 1: gamma = 0.5,
      p(r|b) = 0.5 + 0.5 * 0.15 = 0.575,  p(a|r) = p(a|c) = p(a|d) = 0.5 + 0.5 * 0.4 = 0.7.
    Trigrams: p(r|ab) = (2-1)/2 + 0.5 * 0.575 = 0.7875,  p(a|br) = 0.5 + 0.5 * 0.7 = 0.85,
      p(c|ra) = 0.5 + 0.5 * 0.2 = 0.6,  p(d|ca) = 0.6,  p(a|ac) = p(a|ad) = 0.85,
      p(b|da) = 0.5 + 0.5 * 0.325 = 0.6625.
    """
    model, tok = char_model("abracadabr", 3)
    assert model.meta["discounts"] == [[0.5, 1.0, 1.5]] * 3
    assert model.meta["discount_fallback_orders"] == [1, 2, 3]
    assert model.meta["ngrams"] == [6, 8, 8]  # a b c d r + <s>; distinct bigrams; trigrams

    # Scoring the text itself: the first token has no context (as `charrnn eval` does).
    expected = [0.325, 0.7875, 0.85, 0.6, 0.85, 0.6, 0.85, 0.6625, 0.7875]
    np.testing.assert_allclose(np.exp(model.token_logprobs(tok.encode("abracadabr"))), expected,
                               rtol=1e-6)

    def p(context: str, word: str) -> float:
        dist = model.distribution(tok.encode(context)) if context else None
        if dist is None:
            return float(np.exp(model.logp[tok.encode(word)[0]]))
        return float(dist[tok.encode(word)[0]])

    assert p("", "a") == pytest.approx(0.4, rel=1e-6)
    assert p("", "d") == pytest.approx(0.15, rel=1e-6)
    # Back-off: a b a is unseen, so p(a|ab) = gamma(ab) p(a|b) = 0.5 * (gamma(b) p(a)) = 0.1.
    assert p("ab", "a") == pytest.approx(0.1, rel=1e-6)
    # p(c|br) = gamma(br) gamma(r) p(c) = 0.5 * 0.5 * 0.15; unseen context d d: p(a|d) = 0.7.
    assert p("br", "c") == pytest.approx(0.0375, rel=1e-6)
    assert p("dd", "a") == pytest.approx(0.7, rel=1e-6)
    # ARPA view: back-off weight of a context is its gamma.
    assert float(np.exp(model.backoff[tok.encode("a")[0]])) == pytest.approx(0.5, rel=1e-6)


def test_hand_computed_trigram_lines():
    """'ab\\nab\\nba\\nb' (10 tokens) with --lines: <s>/</s> and lmplz's <unk> mass.

    Sentences <s> a b </s>, <s> a b </s>, <s> b a </s>, <s> b (no final newline, no </s>).
    Adjusted unigram counts a = b = </s> = 2, so gamma() = 3 * 1 / 6 = 0.5 and the uniform
    share over 4 words (a, b, </s>, <unk>; not <s>) is 0.125:
      p(a) = p(b) = p(</s>) = 1/6 + 1/8 = 7/24,  p(<unk>) = 1/8.
    <s>a and <s>b keep raw counts 2: p(a|<s>) = 1/4 + 0.5 * 7/24 = 19/48.
    <s>ab (count 2): p(b|<s>a) = 1/2 + 0.5 * p(b|a), p(b|a) = 1/4 + 0.5 * 7/24 = 19/48,
    so 67/96; likewise p(</s>|ab) = 67/96.
    """
    model, tok = char_model("ab\nab\nba\nb", 3, lines=True)
    assert model.meta["discounts"] == [[0.5, 1.0, 1.5]] * 3
    ids = tok.encode("ab\n")
    np.testing.assert_allclose(np.exp(model.token_logprobs(ids)), [19 / 48, 67 / 96, 67 / 96],
                               rtol=1e-6)
    unigram = np.exp(model.logp[: model.words].astype(np.float64))
    assert unigram[model.unk] == pytest.approx(1 / 8, rel=1e-6)
    assert unigram[tok.encode("a")[0]] == pytest.approx(7 / 24, rel=1e-6)
    assert unigram[model.bos] == 1.0  # lmplz writes <s> with log10 p = 0: never predicted
    total, scored = model.score_ids(ids)
    assert scored == 3
    assert total == pytest.approx(-math.log(19 / 48 * (67 / 96) ** 2), rel=1e-6)


def test_a_word_lines_model_has_one_unk_as_lmplz_does():
    """The same sentences as words ('a b', ...): the word tokenizer's <unk> is lmplz's, so the
    uniform share is again over a, b, </s>, <unk> (a second, zero-count <unk> made it 1/10 and
    every probability 2e-4 log10 off KenLM's on a real vocabulary)."""
    from charrnn.ngram.build import build_model
    from charrnn.tokenizers import UNK, WordTokenizer

    text = "a b\na b\nb a\nb"
    tok = WordTokenizer.build([text])
    model = build_model(tok.encode(text), tok, 3, lines=True)
    assert model.words == tok.vocab_size + 1 and model.unk == tok.token_strings().index(UNK)
    unigram = np.exp(model.logp[: model.words].astype(np.float64))
    assert unigram[model.unk] == pytest.approx(1 / 8, rel=1e-6)
    assert unigram[tok.encode("a")[0]] == pytest.approx(7 / 24, rel=1e-6)
    np.testing.assert_allclose(np.exp(model.token_logprobs(tok.encode("a b\n"))),
                               [19 / 48, 67 / 96, 67 / 96], rtol=1e-6)


def test_discounts_from_count_of_counts():
    """Chen & Goodman (26): t1=10, t2=4, t3=2, t4=1 → Y = 10/18."""
    adjusted = np.array([1] * 10 + [2] * 4 + [3] * 2 + [4] + [9] * 3)
    values, fell_back = discounts_from(adjusted, 2, fallback=False)
    y = 10 / 18
    assert not fell_back
    np.testing.assert_allclose(values, [1 - 2 * y * 4 / 10, 2 - 3 * y * 2 / 4, 3 - 4 * y * 1 / 2],
                               rtol=1e-6)
    with pytest.raises(UserError, match="pass fallback to use"):
        discounts_from(np.array([2, 2, 3]), 1, fallback=False)
    assert discounts_from(np.array([2, 2, 3]), 1, fallback=True) == ([0.5, 1.0, 1.5], True)


def test_prune_parsing():
    assert parse_prune(None, 3) == [0, 0, 0]
    assert parse_prune("0 0 1", 5) == [0, 0, 1, 1, 1]
    assert parse_prune("0,1", 3) == [0, 1, 1]
    for bad in ("1", "0 2 1", "x", "0 0 0 0", "0 -1"):
        with pytest.raises(UserError):
            parse_prune(bad, 3)


def test_pruning_drops_rare_ngrams_and_keeps_mass():
    text = "the cat sat on the mat. the cat ate the rat. a cat sat.\n" * 3 + "odd one out\n"
    full, tok = char_model(text, 4)
    pruned, _ = char_model(text, 4, prune=[0, 0, 1, 1])
    assert pruned.meta["ngrams"][2] < full.meta["ngrams"][2]
    assert pruned.meta["ngrams"][0] == full.meta["ngrams"][0]
    dist = pruned.distribution(tok.encode("the c"))
    assert dist.sum() == pytest.approx(1.0, abs=1e-5)


def test_stream_mode_needs_no_unk():
    model, tok = char_model("hello world\n", 2)
    assert model.unk is None and model.words == tok.vocab_size + 1


@st.composite
def corpora(draw):
    alphabet = draw(st.sampled_from(["ab", "abc\n", "xyz \n", "abcdefg\n"]))
    text = draw(st.text(alphabet=alphabet, min_size=1, max_size=120))
    order = draw(st.integers(1, 5))
    lines = draw(st.booleans()) and "\n" in alphabet
    steps = draw(st.lists(st.integers(0, 1), min_size=order - 1, max_size=order - 1))
    prune = [int(v) for v in np.cumsum([0] + steps)] if draw(st.booleans()) else None
    context = draw(st.text(alphabet=alphabet, max_size=6))
    return alphabet, text, order, lines, prune, context


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corpora())
def test_distributions_sum_to_one(case):
    """Random corpora, orders, modes, pruning and contexts (letters unseen in training too)."""
    alphabet, text, order, lines, prune, context = case
    tok = CharTokenizer(sorted(alphabet))
    model = build_model(tok.encode(text), tok, order, lines, prune, fallback=True)
    hist = model.stream(tok.encode(context))[0] if context else np.array([model.bos])
    dist = model.distribution(hist)
    assert dist[model.bos] == 0.0
    assert dist.sum() == pytest.approx(1.0, abs=2e-5)
    # The distribution and the token-by-token scorer agree on every word.
    if context and not lines:
        for word in range(tok.vocab_size):
            lp = model.token_logprobs(np.append(tok.encode(context), word))[-1]
            assert math.exp(lp) == pytest.approx(dist[word], rel=1e-5)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_packed_chunked_counting_gives_the_same_tables_as_refinement(data):
    """The bounded-memory counter (packed keys, any chunk size) equals the position refiner."""
    from charrnn.ngram.count import count_ngrams, sentence_stream
    from charrnn.ngram.count_packed import count_ngrams_packed

    vocab = data.draw(st.integers(2, 12))
    order = data.draw(st.integers(2, 7))
    ids = np.array(data.draw(st.lists(st.integers(0, vocab - 1), min_size=1, max_size=300)),
                   np.uint8)
    lines = data.draw(st.booleans())
    line_break = data.draw(st.integers(0, vocab - 1))
    chunk = data.draw(st.integers(1, 64))
    bos, words = vocab, vocab + (2 if lines else 1)
    expected_uni, expected = count_ngrams(sentence_stream(ids, bos, line_break, lines), order,
                                          words, bos)
    got_uni, got = count_ngrams_packed(ids, order, words, bos, line_break, lines, chunk=chunk)
    assert np.array_equal(expected_uni, got_uni)
    for want, have in zip(expected, got, strict=True):
        for column in ("word", "suffix", "prefix", "count"):
            assert np.array_equal(getattr(want, column), getattr(have, column)), column


def test_a_word_lines_model_samples_its_rare_words_unk_as_an_rnn_does() -> None:
    """With the tokenizer's <unk> now lmplz's, sampling banned it: rare-word mass went to the
    other words, unlike a stream n-gram, an RNN, and the --lines models of before."""
    from charrnn.ngram.build import build_model
    from charrnn.ngram.sample import sample_ids
    from charrnn.tokenizers import WordTokenizer

    text = "".join(f"a w{i} b\n" for i in range(200))  # w0 … w199 once each: all <unk>
    tok = WordTokenizer.build([text], min_count=2)
    model = build_model(tok.encode(text), tok, 2, lines=True)
    _, ids = sample_ids(model, 300, seed=1)
    assert (np.asarray(ids) == model.unk).sum() > 20  # ~1/3 of the words


def test_a_few_streams_get_the_same_distributions_on_one_thread_as_through_the_pool(
        monkeypatch) -> None:
    from charrnn.ngram import model as ngram_model

    text = "the cat sat on the mat\nthe dog sat\n" * 5
    tok = CharTokenizer.build([text])
    model = build_model(tok.encode(text), tok, 3)
    states = model.start_states(np.zeros(0, np.int32), 3)
    states = model.advance(states, np.array([1, 2, 3]))
    monkeypatch.setattr(ngram_model, "PARALLEL_STREAMS", 1)
    pooled = model.next_distributions(states)
    monkeypatch.setattr(ngram_model, "PARALLEL_STREAMS", 100)
    np.testing.assert_array_equal(model.next_distributions(states), pooled)
    np.testing.assert_allclose(pooled.sum(1), 1.0, rtol=1e-6)  # (float32 tables)


@pytest.mark.parametrize(("args", "message"), [
    ({"prune": [0, 1, 2, 3, 4]}, "give 1 to 3 thresholds"),  # (the extra ones were dropped)
    ({"prune": [0, "1"]}, "give whole numbers"),
    ({"prune": [0, 2, 1]}, "non-decreasing"),
    ({"order": 3.0}, "order must be between 1 and"),
    ({"ids": [0, 1, 999]}, "within the tokenizer's vocabulary"),
])
def test_a_library_build_refuses_what_the_command_line_refuses(args: dict, message: str) -> None:
    """Such calls were accepted (extra thresholds dropped) or raised IndexError/TypeError."""
    tok = CharTokenizer.build(["abc abc\n"])
    ids = np.asarray(args.pop("ids", tok.encode("abc abc\n")))
    with pytest.raises(UserError, match=message):
        build_model(ids, tok, args.pop("order", 3), **args)


def test_a_subword_model_never_samples_a_piece_its_text_did_not_hold(small_text, tmp_path) -> None:
    """The 256 byte pieces of a subword vocabulary, mostly unseen, each kept a share of the
    interpolated uniform distribution: `ngram sample` wrote NUL, ESC and other control bytes."""
    from charrnn.data import PreprocessOptions, preprocess
    from charrnn.ngram.sample import sample_ids

    dataset = preprocess([str(small_text)], tmp_path / "ds",
                         PreprocessOptions(level="subword", vocab_size=300))
    train = np.asarray(dataset.ids("train"))
    unseen = set(range(dataset.tokenizer.vocab_size)) - set(train.tolist())
    assert len(unseen) > 100  # (most byte pieces)
    model = build_model(train, dataset.tokenizer, 3)
    assert model.distribution(np.asarray([model.bos], np.int32))[sorted(unseen)].min() > 0  # scored
    _, ids = sample_ids(model, 5000, temp=2.0, seed=0)
    assert not unseen & set(ids.tolist())
