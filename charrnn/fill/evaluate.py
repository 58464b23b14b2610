"""`charrnn fill eval`: hide random words or characters of held-out text, count top-1 / top-5 hits.

Each case is one blank cut from FILE with up to `context` characters of text on each side (cut at
whitespace where there is any, so word models never see half a word). A word becomes an
unknown-length blank (the method must find the length too), a character a one-token blank.
`segmented` reads FILE as words separated by spaces (zh_seg_*.txt): the words are the units and
the text the models see has the spaces removed; `lexicon` (a space-segmented text) cuts an
unsegmented FILE into words by longest match first. The same cases go to every method.
"""

from __future__ import annotations

import random
import re
import statistics
import sys
import time
from collections.abc import Callable

from charrnn.errors import UserError, check_seed, option
from charrnn.fill.config import FillOptions
from charrnn.fill.engine import fill_template
from charrnn.fill.families import Family
from charrnn.fill.syntax import Blank, Template
from charrnn.inputs import read_text

UNITS = ("word", "char")
LEXICON_WORD = 8  # characters: a lexicon's median word longer than this is unsegmented text


def lexicon_words(path: str) -> set[str]:
    """The words of a space-segmented text (zh_seg_train.txt): a lexicon for `longest_match`."""
    text = read_text([path])
    words = set(text.split())
    if not words:
        raise UserError(f"{path} has no words: {option('lexicon')} takes a text of space-separated words")
    if statistics.median(map(len, words)) > LEXICON_WORD:  # (unsegmented text: each of its
        raise UserError(f"{path} has no spaces between its words, and {option('lexicon')} takes "
                        "a text of space-separated words (as zh_seg_train.txt) or one word a "
                        "line")  # lines was one 'word', so every blank hid a whole line)
    return words


def longest_match(text: str, words: set[str]) -> str:
    """Unsegmented text → words separated by spaces, each the longest lexicon word starting there
    (forward maximum matching, the classic dictionary segmenter); a character no word starts
    with is a word of its own. Existing whitespace stays a boundary."""
    longest = max(map(len, words), default=1)
    out_lines = []
    for line in text.split("\n"):
        pieces = []
        for chunk in line.split():
            pos = 0
            while pos < len(chunk):
                size = next((n for n in range(min(longest, len(chunk) - pos), 1, -1)
                             if chunk[pos : pos + n] in words), 1)
                pieces.append(chunk[pos : pos + size])
                pos += size
        out_lines.append("  ".join(pieces))
    return "\n".join(out_lines)


def _units(text: str, unit: str, segmented: bool) -> tuple[str, list[tuple[int, int]]]:
    """(the text the models read, spans of the units that may be hidden)."""
    if segmented:
        lines, spans, pos = [], [], 0
        for line in text.split("\n"):
            joined = ""
            for word in line.split():
                if unit == "word":
                    if re.search(r"\w", word):  # punctuation is no word
                        spans.append((pos + len(joined), pos + len(joined) + len(word)))
                else:
                    spans += [(pos + len(joined) + i, pos + len(joined) + i + 1)
                              for i in range(len(word))]
                joined += word
            lines.append(joined)
            pos += len(joined) + 1
        return "\n".join(lines), spans
    pattern = r"\w+" if unit == "word" else r"\S"
    return text, [m.span() for m in re.finditer(pattern, text)]


HAN_KANA = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def _unsegmented(text: str, sample: int = 100_000) -> bool:
    """Whether most of the text's word characters are ideographs or kana, which are written
    without spaces between words."""
    head = text[:sample]
    letters = len(re.findall(r"\w", head))
    return letters > 0 and len(HAN_KANA.findall(head)) > letters / 2


def _spaced(text: str, sample: int = 100_000, share: float = 0.1) -> bool:
    """Whether spaces separate the text's words: about one space (within a line) for every five
    other characters in English, none in Chinese, and in Thai, written without spaces between
    words, one between phrases (about one in twenty)."""
    head = text[:sample]
    spaces = head.count(" ") + head.count("\t")
    return spaces > share * max(1, len(head) - spaces - head.count("\n"))


def _check_segmented(file: str, text: str) -> None:
    """--segmented reads Chinese or Japanese split into words by spaces, which the models never
    saw: a text without those spaces had no word to hide (every score 0), and in English, whose
    spaces are part of the text, the models read it with them taken out."""
    if not _unsegmented(text):
        raise UserError(f"{file} is not written in Chinese or Japanese: {option('segmented')} takes out the "
                        "spaces that a segmenter put between such words, and this text's spaces "
                        f"are its own ({option('unit')} word hides its words as they are): drop "
                        f"{option('segmented')}")
    if not _spaced(text):
        raise UserError(f"{file} has no spaces between its words, and {option('segmented')} reads words "
                        "separated by spaces (as zh_seg_test.txt): cut it into words with "
                        f"{option('lexicon')} SEG.txt instead, or hide characters with {option('unit')} char")


def check_options(blanks: int, unit: str, context: int) -> None:
    """Before any model loads: a bad value should not wait for the models."""
    if unit not in UNITS:
        raise UserError(f"{option('unit')} must be word or char, not {unit!r}")
    if blanks < 1:
        raise UserError(f"{option('blanks')} must be ≥ 1, got {blanks}")
    if context < 1:  # with no context every case is the same guess: nothing is measured
        raise UserError(f"{option('context')} must be ≥ 1 character (each side of a blank), got {context}")


def make_cases(text: str, blanks: int, unit: str = "word", segmented: bool = False,
               context: int = 100, seed: int = 0, source: str = "the text"
               ) -> list[tuple[Template, str]]:
    check_options(blanks, unit, context)
    check_seed(seed)
    if unit == "word" and not segmented and _unsegmented(text):
        raise UserError(f"{source} is written without spaces between words (Chinese, Japanese), "
                        f"so a word blank would hide a whole clause: use {option('unit')} char, or "
                        f"{option('lexicon')} SEG.txt (its words by longest match), or "
                        f"{option('segmented')} for a text whose words are separated by spaces")
    text, spans = _units(text, unit, segmented)
    if not spans:
        what = "words" if unit == "word" else "characters"
        raise UserError(f"{source} has no {what} to hide (it is empty or only whitespace): give "
                        "a held-out text file")
    chosen = random.Random(seed).sample(spans, min(blanks, len(spans)))
    cases = []
    for start, end in chosen:
        left, right = text[max(0, start - context) : start], text[end : end + context]
        if start - context > 0 and re.search(r"\s", left):
            left = left[re.search(r"\s", left).end():]  # drop the cut word at the window's edge
        if end + context < len(text) and re.search(r"\s", right):
            right = right[: max(m.start() for m in re.finditer(r"\s", right))]
        blank = Blank(0, 0, 1, 1 if unit == "char" else None)
        cases.append((Template([left, right], [blank]), text[start:end]))
    return cases


def evaluate(cases: list[tuple[Template, str]], families: dict[str, Family], methods: list[str],
             opts: FillOptions, progress: Callable[[str], None] | None = None,
             done: dict | None = None) -> dict:
    """Top-1 and top-5 accuracy of every method on the same cases; each method's, once scored,
    goes into `done` too (what a caller stopped half-way can still show)."""
    opts.top_k = max(opts.top_k, 5)
    opts.wrap = False  # the windows are cut from running text, not whole lines
    results = done if done is not None else {}
    for method in methods:
        hits1 = hits5 = 0
        started = time.time()
        for n, (template, gold) in enumerate(cases, 1):
            fills = [f.fills[0] for f in fill_template(template, families, method, opts)]
            hits1 += bool(fills) and fills[0] == gold
            hits5 += gold in fills[:5]
            if progress and (n % 50 == 0 or n == len(cases)):
                progress(f"{method}: {n}/{len(cases)} top-1 {hits1 / n:.3f} top-5 {hits5 / n:.3f}")
        seconds = time.time() - started
        results[method] = {"top1": hits1 / len(cases), "top5": hits5 / len(cases),
                           "cases": len(cases), "seconds": round(seconds, 1)}
    return results


def cases_of(file: str, blanks: int, unit: str = "word", segmented: bool = False,
             context: int = 100, seed: int = 0, lexicon: str | None = None
             ) -> list[tuple[Template, str]]:
    """FILE's cases (read before any model loads: a bad file should not wait for them)."""
    text = read_text([file])
    if lexicon is not None and _spaced(text):
        raise UserError(f"{file} is written with spaces between words, and {option('lexicon')} cuts "
                        "text written without them (Chinese, Japanese, Thai) into words: drop "
                        f"{option('lexicon')}")
    if segmented:
        _check_segmented(file, text)
    if lexicon is not None:  # unsegmented Chinese: its words by longest match
        text, segmented = longest_match(text, lexicon_words(lexicon)), True
    return make_cases(text, blanks, unit, segmented, context, seed, source=file)


def fill_eval(file: str, blanks: int, families: dict[str, Family], methods: list[str],
              opts: FillOptions, unit: str = "word", segmented: bool = False, context: int = 100,
              seed: int = 0, quiet: bool = False, lexicon: str | None = None,
              cases: list[tuple[Template, str]] | None = None, done: dict | None = None) -> dict:
    """Every method's top-1 / top-5 on FILE's cases (`cases`: cases_of's, when read already;
    `done`: see evaluate)."""
    _refuse_char_blanks_of_words(unit, families, methods)
    if cases is None:
        cases = cases_of(file, blanks, unit, segmented, context, seed, lexicon)
    segmented = segmented or lexicon is not None
    say = None if quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    _check_writable(file, unit, cases, families, methods, say)
    return {"file": file, "unit": unit, "segmented": segmented, "blanks": len(cases),
            "context_chars": context, "seed": seed, "lexicon": lexicon,
            "models": next(iter(families.values())).names if families else {},
            "methods": evaluate(cases, families, methods, opts, say, done)}


def _refuse_char_blanks_of_words(unit: str, families: dict[str, Family],
                                        methods: list[str]) -> None:
    """A char blank is one token: a word model's token is a word, so it could never fill one
    and would score 0 on every blank. (A subword model's pieces include every character.)"""
    from charrnn.fill.families import method_family

    if unit != "char":
        return
    for method in methods:
        if method_family(families, method).tokenizer.level == "word":
            raise UserError(f"{option('unit')} char hides one character, and the {method} method's "
                            f"models read words, whose tokens are not characters: use "
                            f"{option('unit')} word, or char-level or subword models")


def unwritable(cases: list[tuple[Template, str]], tokenizer) -> list[str]:
    """The hidden units no fill of `tokenizer`'s models can equal: one with a character (a word)
    outside its vocabulary; a subword model spells any text."""
    if tokenizer.level == "subword":
        return []
    if tokenizer.level == "char":
        return [gold for _, gold in cases if any(c not in tokenizer.index for c in gold)]
    return [gold for _, gold in cases if tokenizer.unknown_words(gold)]


def _check_writable(file: str, unit: str, cases: list[tuple[Template, str]],
                    families: dict[str, Family], methods: list[str], say) -> None:
    """Hidden units outside a method's vocabulary score 0 whatever it does: where it can write
    none, refused (English models on Chinese text scored 0.000 and said nothing); where some,
    said, once for the methods of one vocabulary."""
    from charrnn.fill.families import method_family

    by_family: dict[int, tuple[Family, list[str]]] = {}
    for method in methods:
        family = method_family(families, method)
        by_family.setdefault(id(family), (family, []))[1].append(method)
    for family, named in by_family.values():
        lost = unwritable(cases, family.tokenizer)
        which = " and ".join(named) + (" method's" if len(named) == 1 else " methods'")
        if lost and len(lost) == len(cases):
            raise UserError(f"no {unit} hidden in {file} can be written by the {which} models "
                            f"(e.g. {lost[0]!r} is outside their vocabulary): evaluate them on "
                            "text like the text they were trained on, or leave them out with "
                            f"{option('method')}")
        if lost and say is not None:
            say(f"note: {len(lost)} of the {len(cases)} {unit}s hidden are outside the {which} "
                f"vocabulary (e.g. {lost[0]!r}): no fill of it can be right there")
