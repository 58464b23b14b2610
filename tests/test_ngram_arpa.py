"""ARPA: export → import gives the same model; foreign files (KenLM, SRILM style) load too."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from charrnn.errors import UserError
from charrnn.ngram.arpa import escape, export_arpa, import_arpa
from charrnn.ngram.build import build_model
from charrnn.ngram.model import load
from charrnn.tokenizers import CharTokenizer, WordTokenizer

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n") * 4


def check_same(a, b, ids) -> None:
    np.testing.assert_allclose(a.token_logprobs(ids), b.token_logprobs(ids), rtol=1e-6)
    for hist in (ids[:1], ids[:5], ids[:40]):
        seq = a.stream(hist)[0]
        np.testing.assert_allclose(a.distribution(seq), b.distribution(seq), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("lines", [False, True])
@pytest.mark.parametrize("order", [1, 3, 6])
def test_round_trip_chars(tmp_path: Path, lines: bool, order: int):
    tok = CharTokenizer.build([TEXT + "\t\\▁<"])
    model = build_model(tok.encode(TEXT), tok, order, lines)
    path = tmp_path / "m.arpa"
    info = export_arpa(model, path)
    assert info["ngrams"][1:] == model.meta["ngrams"][1:]
    again = import_arpa(path)
    assert again.meta["mode"] == model.meta["mode"] and again.order == order
    assert again.tokenizer.to_json() == tok.to_json()
    check_same(model, again, tok.encode("First Citizen:\nSpeak, hear me.\n"))


def test_round_trip_words_with_unk(tmp_path: Path):
    tok = WordTokenizer.build([TEXT], min_count=2)
    model = build_model(tok.encode(TEXT), tok, 3, lines=True)
    path = tmp_path / "w.arpa"
    export_arpa(model, path)
    text = path.read_text(encoding="utf-8")
    assert "\t<unk>\t" in text and "\\<unk>" not in text  # the tokenizer's is lmplz's <unk>
    assert "\t<s>\t" in text and "</s>" in text
    again = import_arpa(path)
    check_same(model, again, tok.encode("You are all rather hungry to speak.\n"))


def test_an_exported_word_model_read_as_kenlm_reads_it_scores_unknown_words_alike(
        tmp_path: Path) -> None:
    """Without our header (as KenLM reads the file), an unknown word is ARPA's <unk>, which must
    be the word charrnn reads it as: the tokenizer's <unk>, not the zero-count one --lines adds
    (PTB through export and KenLM gave perplexity 441.8 where charrnn gave 204.8)."""
    text = TEXT + "Once upon a midnight dreary\n"  # words seen once: the tokenizer's <unk>
    tok = WordTokenizer.build([text], min_count=2)
    model = build_model(tok.encode(text), tok, 3, lines=True)
    path, foreign = tmp_path / "w.arpa", tmp_path / "foreign.arpa"
    export_arpa(model, path)
    body = "\n".join(x for x in path.read_text(encoding="utf-8").split("\n")
                     if not x.startswith("#"))
    foreign.write_text(body, encoding="utf-8")
    kenlm_like = import_arpa(foreign)
    line = "You are all zebra hungry to <unk> speak.\n"
    ours, theirs = tok.encode(line), kenlm_like.tokenizer.encode(line)
    assert (ours == tok.token_strings().index("<unk>")).sum() == 3
    assert kenlm_like.token_logprobs(theirs).sum() == pytest.approx(
        model.token_logprobs(ours).sum(), rel=1e-6)


def test_an_export_of_the_spelling_before_imports_as_it_did(tmp_path: Path) -> None:
    """Exports made before UNK_SPELLING 2 named the tokenizer's <unk> \\<unk> and lmplz's <unk>."""
    text = TEXT + "Once upon a midnight dreary\n"
    tok = WordTokenizer.build([text], min_count=2)
    model = build_model(tok.encode(text), tok, 3, lines=True)
    path = tmp_path / "w.arpa"
    export_arpa(model, path)
    header, body = path.read_text(encoding="utf-8").split("\n", 1)
    swapped = body.replace("\\<unk>", "\0").replace("<unk>", "\\<unk>").replace("\0", "<unk>")
    path.write_text(header.replace(', "unk_spelling": 2', "") + "\n" + swapped, encoding="utf-8")
    assert '"unk_spelling"' not in path.read_text(encoding="utf-8")
    check_same(model, import_arpa(path), tok.encode("You are all zebra hungry to speak.\n"))


def test_escape_is_injective_and_whitespace_free():
    tokens = [" ", "▁", "\\", "\\u2581", "\n", "\\n", "<s>", "\\<s>", "a b", "\u3000", "x"]
    spelled = [escape(t) for t in tokens]
    assert len(set(spelled)) == len(tokens)
    assert not any(ch.isspace() for s in spelled for ch in s)


FOREIGN = """\\data\\
ngram 1=5
ngram 2=3
ngram 3=1

\\1-grams:
-1.0\t<unk>\t0
0\t<s>\t-0.30103
-0.5\t</s>\t0
-0.6\ta\t-0.2
-0.7\tb\t-0.1

\\2-grams:
-0.2\t<s> a
-0.3\ta b
-0.25\tb </s>

\\3-grams:
-0.1\t<s> b a

\\end\\
"""


def test_foreign_arpa_with_missing_context_and_suffix(tmp_path: Path):
    """'<s> b a' lacks both '<s> b' and 'b a': they come back as blanks that change no score."""
    path = tmp_path / "foreign.arpa"
    path.write_text("# made by hand\n" + FOREIGN, encoding="utf-8")
    model = import_arpa(path)
    assert model.lines and model.tokenizer.level == "word" and model.order == 3
    tok = model.tokenizer

    def log10s(text: str) -> list[float]:
        return list(model.token_logprobs(tok.encode(text)) / math.log(10))

    np.testing.assert_allclose(log10s("a b\n"), [-0.2, -0.3, -0.25], atol=1e-6)
    # b after <s>: back-off(<s>) + p(b); then the trigram <s> b a; </s> after a: bo(a) + p(</s>).
    np.testing.assert_allclose(log10s("b a\n"), [-0.30103 - 0.7, -0.1, -0.2 - 0.5], atol=1e-6)
    # a after "a b": no trigram, "a b" has no back-off, the blank "b a" = bo(b) + p(a).
    np.testing.assert_allclose(log10s("a b a")[-1], -0.1 - 0.6, atol=1e-6)
    # Unknown words are <unk>.
    np.testing.assert_allclose(log10s("zebra\n")[0], -0.30103 - 1.0, atol=1e-6)


@pytest.mark.parametrize("content", ["not an arpa file\n", "\\data\\\nngram 1=3\n\n\\1-grams:\n"
                                     "-1\t<s>\n\\end\\\n", FOREIGN.replace("-0.3\ta b", "x\ta b"),
                                     FOREIGN.replace("-0.3\ta b", "0.5\ta b"),
                                     FOREIGN.replace("-0.3\ta b", "-0.3\tb </s>")])
def test_bad_arpa_files(tmp_path: Path, content: str):
    path = tmp_path / "bad.arpa"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError):
        import_arpa(path)


def test_a_gzipped_arpa_is_read_and_a_gap_in_the_counts_says_what_to_do(tmp_path: Path):
    import gzip

    packed = tmp_path / "m.arpa.gz"
    packed.write_bytes(gzip.compress(FOREIGN.encode("utf-8")))
    plain = tmp_path / "m.arpa"
    plain.write_text(FOREIGN, encoding="utf-8")
    assert np.array_equal(import_arpa(packed).logp, import_arpa(plain).logp)  # as KenLM reads it
    gap = tmp_path / "gap.arpa"
    gap.write_text("\\data\\\nngram 1=3\nngram 3=1\n", encoding="utf-8")
    with pytest.raises(UserError, match="expected 'ngram 2=COUNT': the counts run from order 1"):
        import_arpa(gap)


@pytest.mark.parametrize(("line", "nan"), [("-0.6\ta\t-0.2", "nan\ta\t-0.2"),
                                           ("-0.6\ta\t-0.2", "-0.6\ta\tnan"),
                                           ("-0.3\ta b", "NaN\ta b")])
def test_a_probability_that_is_not_a_number_names_its_line(tmp_path: Path, line: str,
                                                            nan: str) -> None:
    path = tmp_path / "nan.arpa"
    path.write_text(FOREIGN.replace(line, nan), encoding="utf-8")
    with pytest.raises(UserError, match=f"line '{nan.replace(chr(9), '.t')[:3]}.*not a number"):
        import_arpa(path)


def test_an_eos_word_says_how_to_import_the_file(tmp_path: Path) -> None:
    path = tmp_path / "eos.arpa"
    path.write_text(FOREIGN.replace("\tb\t", "\t<eos>\t").replace("a b", "a <eos>")
                    .replace(" b ", " <eos> ").replace("b </s>", "<eos> </s>"), encoding="utf-8")
    with pytest.raises(UserError, match="rename it in the file, e.g. to <eos_>"):
        import_arpa(path)


def test_kenlm_reads_our_export(tmp_path: Path):
    """Optional: the `kenlm` module scores our ARPA export exactly as we do."""
    kenlm = pytest.importorskip("kenlm")
    tok = CharTokenizer.build([TEXT])
    model = build_model(tok.encode(TEXT), tok, 5, lines=True)
    path = tmp_path / "m.arpa"
    export_arpa(model, path)
    lm = kenlm.Model(str(path))
    test = "First Citizen:\nAll speak.\n"
    ours = float(model.token_logprobs(tok.encode(test)).sum()) / math.log(10)
    theirs = sum(lm.score(" ".join(escape(c) for c in line), bos=True, eos=True)
                 for line in test.split("\n")[:-1])
    assert theirs == pytest.approx(ours, rel=1e-6)


def test_kenlm_reads_our_one_stream_export(tmp_path: Path):
    """A one-stream model in KenLM: bos=False, eos=False, the newline is an ordinary word."""
    kenlm = pytest.importorskip("kenlm")
    tok = CharTokenizer.build([TEXT])
    model = build_model(tok.encode(TEXT), tok, 4)
    path = tmp_path / "s.arpa"
    export_arpa(model, path)
    lm = kenlm.Model(str(path))
    test = "First Citizen:\nAll speak.\n"
    ours = model.token_logprobs(tok.encode(test)) / math.log(10)
    words = " ".join(escape(c) for c in test)
    theirs = [score for score, _, _ in lm.full_scores(words, bos=False, eos=False)]
    np.testing.assert_allclose(theirs[1:], ours, rtol=1e-5)  # we do not score the first token


def test_sampling_a_foreign_model_never_writes_unk(tmp_path: Path):
    from charrnn.ngram.sample import generate_text

    path = tmp_path / "foreign.arpa"
    path.write_text(FOREIGN.replace("-1.0\t<unk>", "-0.01\t<unk>"), encoding="utf-8")
    text = generate_text(import_arpa(path), 300, seed=0)
    assert "<unk>" not in text and set(text.split()) <= {"a", "b"}


@pytest.mark.parametrize("key, value", [("tokenizer", "hello"), ("unk_spelling", "x"),
                                        ("tokenizer", {"level": "word", "words": ["<eos>"],
                                                       "pattern": "(", "lower": False}),
                                        ("unk", 999), ("mode", 3)])
def test_a_damaged_header_line_is_a_user_error_naming_the_file(tmp_path: Path, key: str,
                                                                value: object) -> None:
    """Each of these was an internal error (AttributeError, TypeError, re.error)."""
    import json

    tok = WordTokenizer.build([TEXT])
    path = tmp_path / "w.arpa"
    export_arpa(build_model(tok.encode(TEXT), tok, 3, lines=True), path)
    first, body = path.read_text(encoding="utf-8").split("\n", 1)
    header = json.loads(first.split(":", 1)[1])
    damaged = first.split(":", 1)[0] + ": " + json.dumps({**header, key: value})
    path.write_text(damaged + "\n" + body, encoding="utf-8")
    with pytest.raises(UserError, match="w.arpa: the charrnn header line"):
        import_arpa(path)


@pytest.mark.parametrize(("edit", "said"), [
    (lambda t: t.replace("\\end\\\n", ""), "has no \\\\end\\\\ line"),
    (lambda t: t.replace("-0.1\t<s> b a", "-0.1\t<s> b a\t-0.3"), "highest order"),
    (lambda t: t.replace("0\t<s>\t-0.30103\n", "").replace("ngram 1=5", "ngram 1=4"),
     "has no <s> unigram"),
    (lambda t: t.replace("-0.6\ta\t-0.2", "# a comment\n-0.6\ta\t-0.2"), "a comment inside"),
    (lambda t: t.replace("-0.7\tb\t-0.1", "-0.7\t\t-0.1"), "has an empty word"),
    (lambda t: "\\data\\\n" + "".join(f"ngram {n}=1\n" for n in range(1, 14)), "order-13"),
])
def test_an_arpa_file_kenlm_refuses_is_refused_for_the_reason_it_has(tmp_path: Path, edit,
                                                                     said: str) -> None:
    """Each was taken (a truncated file, a back-off nothing reads, no <s>) or refused for
    another reason (a comment counted as an n-gram, the word read from the back-off column)."""
    path = tmp_path / "x.arpa"
    path.write_text(edit(FOREIGN), encoding="utf-8")
    with pytest.raises(UserError, match=said):
        import_arpa(path)


def test_a_foreign_arpa_without_unk_gives_unknown_words_kenlms_minus_100(tmp_path: Path) -> None:
    """It was -99 (everything below -99 was raised to it), so an OOV scored 2 log10 above KenLM."""
    path = tmp_path / "x.arpa"
    path.write_text("\ufeff" + FOREIGN.replace("-1.0\t<unk>\t0\n", "").replace("ngram 1=5",
                                                                              "ngram 1=4"))
    model = import_arpa(path)  # (a byte-order mark before \data\ is no n-gram either)
    assert model.meta["unk_missing"] and model.logp[model.meta["unk_word"]] == pytest.approx(
        -100 * math.log(10), rel=1e-6)


def test_a_value_below_what_float32_holds_is_a_zero_probability_not_a_damaged_model(
        tmp_path: Path) -> None:
    """-1e39 became -inf in the saved model, which every later command refused as damaged."""
    path = tmp_path / "x.arpa"
    path.write_text(FOREIGN.replace("-0.3\ta b", "-1e39\ta b").replace("-0.6\ta\t-0.2",
                                                                        "-0.6\ta\t-1e39"))
    model = import_arpa(path)
    model.save(tmp_path / "model")
    again = load(tmp_path / "model")  # it said "corrupt (… not a finite number)"
    log10 = again.token_logprobs(again.tokenizer.encode("a b\n")) / math.log(10)
    assert log10[1] == pytest.approx(-99.0, abs=1e-4)  # p(b | a), as an ARPA zero
