"""ARPA files: export any model, import ours or any other toolkit's (KenLM, SRILM, ...).

Export writes log10 probabilities and back-off weights, `<s>` with log10 p = 0 as lmplz does,
and token strings made safe for a whitespace-split format (`escape`): a space becomes `▁`,
other whitespace and `\\` are backslash-escaped, and a token spelled like `<s>`, `</s>` or
`<unk>` gets a leading backslash. With --lines the line break is `</s>`. A word model's `<unk>`
(its rare and unknown words) is ARPA's `<unk>`, and with --lines lmplz's `<unk>` too; a char
model's --lines `<unk>`, which it adds as lmplz does, is `<unk>`. (Files of before also had a
zero-count `\\<unk>` beside a word model's: they still import.) A one-stream model adds `</s>` (and a
char model `<unk>`) at log10 p = -99 because KenLM insists on them, and is scored in KenLM with
bos=False, eos=False. A `# charrnn-ngram:` comment line
before `\\data\\` (KenLM skips `#` lines) carries the tokenizer, so importing our own export
restores the same model; a foreign ARPA becomes a word-level --lines model.

Import accepts n-grams whose context or shorter suffix is missing (pruned SRILM files): they
are added as blank entries whose probability is the backed-off one, which changes no score.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import re
import zlib
from pathlib import Path
from typing import TextIO

import numpy as np

from charrnn import fsutil
from charrnn.errors import UserError, option
from charrnn.ngram.arpa_tables import LOG10, MISSING_LOG10, build_fast, build_general, to_ids
from charrnn.ngram.checks import own_unk, word_count
from charrnn.ngram.model import MAX_ORDER, NGramModel
from charrnn.tokenizers import EOS, UNK, Tokenizer, WordTokenizer, tokenizer_from_json

HEADER = "# charrnn-ngram: "
UNK_SPELLING = 2  # the header's "unk_spelling": which `<unk>` is whose (_spellings)
RESERVED = ("<s>", "</s>", "<unk>")
MISSING_UNK_LOG10 = -100.0  # what KenLM gives <unk> when an ARPA file has none (and warns)
_NAMED = {"\\": "\\\\", " ": "\u2581", "\u2581": "\\u2581", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
_SPLIT = re.compile(r"[ \t]+")


def escape(token: str) -> str:
    """A whitespace-free, injective spelling of a token for ARPA files."""
    out = []
    for ch in token:
        if ch in _NAMED:
            out.append(_NAMED[ch])
        elif ch.isspace() or not ch.isprintable():
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
        else:
            out.append(ch)
    text = "".join(out)
    return "\\" + text if text in RESERVED or not text else text


def word_strings(model: NGramModel) -> list[str]:
    """ARPA spelling of every word id of the model."""
    return _spellings(model.tokenizer, model.lines, own_unk(model.vocab_size, model.unk),
                      UNK_SPELLING)


def _spellings(tokenizer: Tokenizer, lines: bool, has_unk: bool, spelling: int) -> list[str]:
    """Every word id's ARPA spelling. A word or subword tokenizer's `<unk>` — the word charrnn
    reads an unknown word as — is ARPA's `<unk>`, so KenLM maps an unknown word where charrnn
    does; a `<unk>` the model adds of its own (`has_unk`: a char --lines model's, or a word
    model's second one in files of before) is then `\\<unk>`. Files of UNK_SPELLING 1 (before)
    spelled the two the other way round."""
    names = [escape(t) for t in tokenizer.token_strings()]
    line_break = tokenizer.line_break_id()
    if lines and line_break is not None:
        names[line_break] = "</s>"
    names.append("<s>")
    own = "<unk>"
    if spelling >= 2 and escape(UNK) in names:
        names[names.index(escape(UNK))], own = "<unk>", escape(UNK)
    if has_unk:
        names.append(own)
    return names


# -- export ---------------------------------------------------------------------------------

def export_arpa(model: NGramModel, path: Path) -> dict:
    """Write `model` as an ARPA file; returns {"ngrams": [...per order], "path": ...}.

    An existing file is replaced only when it is an ARPA file already (an earlier export), and
    atomically: a typo in --arpa must not destroy a corpus, nor a failed write the old model."""
    if not str(path) or not Path(path).name:  # Path("") is "." (a folder)
        raise UserError(f"{option('arpa')} needs a file name, e.g. {option('arpa')} model.arpa (got "
                        f"{str(path)!r})")
    path = Path(path)
    fsutil.refuse_overwrite(path, looks_like_arpa, "an ARPA file", option("arpa"))
    with fsutil.atomic_file(path) as tmp:
        if path.suffix == ".gz":  # model.arpa.gz: gzipped, as lmplz users keep them (named
            # in the gzip header as gunzip would name it, not as the temporary file)
            with open(tmp, "wb") as raw, gzip.GzipFile(path.stem, "wb", 6, raw, mtime=0) as zipped, \
                    io.TextIOWrapper(zipped, encoding="utf-8", newline="\n") as out:
                counts = _write_arpa(model, out)
        else:
            with open(tmp, "w", encoding="utf-8", newline="\n") as handle:
                counts = _write_arpa(model, handle)
    return {"path": str(path), "ngrams": counts}


def write_arpa(model: NGramModel, handle: TextIO) -> list[int]:
    """`model` as ARPA text on an open stream (standard output); the n-gram count per order."""
    return _write_arpa(model, handle)


def _write_arpa(model: NGramModel, handle: TextIO) -> list[int]:
    names = np.array(word_strings(model), dtype=object)
    extra = [] if model.lines else [w for w in ("</s>", "<unk>") if w not in names]
    off = model.offsets
    header = {k: model.meta.get(k) for k in ("mode", "vocab_size", "bos", "unk", "line_break",
                                              "tokenizer", "discounts", "prune", "dataset")}
    header["unk_spelling"] = UNK_SPELLING
    counts = [int(off[n] - off[n - 1]) for n in range(1, model.order + 1)]
    counts[0] += len(extra)
    handle.write(HEADER + json.dumps(header, ensure_ascii=False) + "\n")
    made = "imported from another toolkit's ARPA file" if model.meta.get("imported_from") \
        and "discounts" not in model.meta else "interpolated modified Kneser-Ney (charrnn)"
    handle.write(f"# Smoothing: {made}\n\n\\data\\\n")
    handle.writelines(f"ngram {n}={c}\n" for n, c in enumerate(counts, 1))
    text = names
    for n in range(1, model.order + 1):
        nodes = slice(int(off[n - 1]), int(off[n]))
        if n > 1:
            suffix = model.suffix[nodes].astype(np.int64) - off[n - 2]
            text = names[model.word[nodes]] + " " + text[suffix]
        logp = _log10_text(model.logp[nodes])
        handle.write(f"\n\\{n}-grams:\n")
        if n == 1:
            tail = "\t0" if model.order > 1 else ""
            handle.writelines(f"{MISSING_LOG10:.1f}\t{w}{tail}\n" for w in extra)
        if n < model.order:
            backoff = _log10_text(model.backoff[nodes])
            handle.writelines(f"{p}\t{w}\t{b}\n" for p, w, b in zip(logp, text, backoff, strict=True))
        else:
            handle.writelines(f"{p}\t{w}\n" for p, w in zip(logp, text, strict=True))
    handle.write("\n\\end\\\n")
    return counts


GZIP_MAGIC = b"\x1f\x8b"


def _open_arpa(path: Path, mode: str):
    """An ARPA file as it is, or gzipped (as KenLM reads `model.arpa.gz`): by its first bytes."""
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == GZIP_MAGIC
    if gzipped:
        return gzip.open(path, mode, **({"encoding": "utf-8"} if "t" in mode else {}))
    return open(path, mode, **({"encoding": "utf-8"} if "t" in mode else {}))


def looks_like_arpa(path: Path, max_lines: int = 10_000) -> bool:
    """Whether a file is an ARPA model: `\\data\\` is its first line after blank lines and `#`
    comments (our own export starts with comment lines, lmplz's with a blank line). Read in
    bounded pieces, so a large binary file costs one small read."""
    with _open_arpa(path, "rb") as handle:
        for _ in range(max_lines):
            line = handle.readline(1 << 16)
            if not line:
                return False
            if line.startswith(b"#"):
                while line and not line.endswith(b"\n"):  # our header line can be long
                    line = handle.readline(1 << 16)
                continue
            if line.strip():
                return line.strip() == b"\\data\\"
    return False


def _log10_text(values: np.ndarray) -> list[str]:
    # 9 significant digits: a float32 survives the text round trip.
    return [f"{v:.9g}" for v in (np.asarray(values, dtype=np.float64) / LOG10).tolist()]


# -- import ---------------------------------------------------------------------------------

def import_arpa(path: Path) -> NGramModel:
    """Read an ARPA file (ours or foreign) into a model."""
    header, sections = _read(Path(path))
    if header is not None:
        try:
            tokenizer = tokenizer_from_json(header["tokenizer"])
        except UserError as exc:
            raise UserError(f"{path}: the charrnn header line's tokenizer is damaged ({exc}); "
                            "delete that line to read the file as a foreign ARPA") from exc
        lines = header.get("mode") == "lines"
        meta = {k: v for k, v in header.items() if k != "tokenizer"}
    else:
        tokenizer, lines, meta = _foreign_tokenizer(path, sections[0]), True, {}
    vocab = tokenizer.vocab_size
    line_break = tokenizer.line_break_id()
    unk = header.get("unk") if header is not None else None
    if unk is not None and not (0 <= unk < vocab or unk == vocab + 1):
        raise UserError(f"{path}: the charrnn header line's <unk> id {unk} is outside its "
                        f"vocabulary of {vocab}: the header is damaged (delete that line to read "
                        "the file as a foreign ARPA)")
    words, has_unk = word_count(vocab, unk), own_unk(vocab, unk)
    if header is not None:
        spelling = header.get("unk_spelling", 1)
        index = {w: i for i, w in enumerate(_spellings(tokenizer, lines, has_unk, spelling))}
    else:  # a foreign ARPA's words are verbatim
        index = {t: i for i, t in enumerate(tokenizer.token_strings())}
        index.update({"<s>": vocab, "</s>": line_break, "<unk>": index[UNK]})
    parsed = [_parse(path, lines, n, n == len(sections)) for n, lines in enumerate(sections, 1)]
    model = build_fast(parsed, index, words, vocab, skip_unknown=header is not None)
    if model is None:  # some n-gram lacks its suffix or context: the general path adds blanks
        rows, values = to_ids(path, parsed, index, skip_unknown=header is not None)
        model = build_general(rows, values, words, vocab)
    model.meta.update({**meta, "mode": "lines" if lines else "stream", "vocab_size": vocab,
                       "bos": vocab, "unk": unk,
                       "line_break": line_break, "tokenizer": tokenizer.to_json(),
                       "imported_from": str(path)})
    if header is None:  # a foreign <unk> is a word of the tokenizer, but never text to write
        model.meta["unk_word"] = index["<unk>"]
        if "<unk>" not in parsed[0][2]:  # KenLM's stand-in, and its warning (the CLI's note)
            model.logp[index["<unk>"]] = MISSING_UNK_LOG10 * LOG10
            model.meta["unk_missing"] = True
    return model


def _read(path: Path) -> tuple[dict | None, list[list[str]]]:
    """(our header or None, per order: the n-gram lines)."""
    try:
        handle = _open_arpa(path, "rt")
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from exc
    header, expected, sections, current, ended = None, [], [], None, False
    with handle:
        try:
            for number, raw in enumerate(handle, 1):
                line = raw.rstrip("\r\n").lstrip("\ufeff" if number == 1 else "")
                if current is None and not sections and not expected:
                    if line.startswith(HEADER):
                        header = _parse_header(path, line[len(HEADER):])
                    if line.strip() in ("", "\\data\\") or line.startswith("#"):
                        continue
                if line.startswith("ngram "):
                    expected.append(_parse_count(path, number, line, len(expected) + 1))
                elif re.fullmatch(r"\\\d+-grams:", line.strip()):
                    n = int(line.strip()[1:].split("-")[0])
                    if n != len(sections) + 1 or n > len(expected):
                        raise UserError(f"{path}:{number}: unexpected section {line.strip()}")
                    current = []
                    sections.append(current)
                elif line.strip() == "\\end\\":
                    ended = True
                    break
                elif line.strip():
                    if current is not None and line.startswith("#"):
                        raise UserError(f"{path}:{number}: a comment inside the {len(sections)}-"
                                        "grams: ARPA has comments before \\data\\ only (KenLM "
                                        "reads this line as an n-gram)")
                    if current is None:
                        raise UserError(f"{path}:{number}: {line[:60]!r} outside an n-gram "
                                        "section: is this an ARPA file?")
                    current.append(line.strip())
        except UnicodeDecodeError as exc:
            raise UserError(f"{path} is not UTF-8 text: is it a binary (KenLM) model? Give the "
                            "ARPA text file") from exc
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise UserError(f"{path}: the gzip stream is damaged or cut short ({exc})") from exc
    if len(expected) > MAX_ORDER:
        raise UserError(f"{path} is an order-{len(expected)} model; charrnn handles up to "
                        f"{MAX_ORDER}")
    if not expected or len(sections) != len(expected):
        raise UserError(f"{path}: no \\data\\ section with matching n-gram sections: not an "
                        "ARPA file, or truncated")
    if not ended:
        raise UserError(f"{path} has no \\end\\ line after its {len(expected)}-grams: the file "
                        "is truncated (KenLM refuses it too)")
    for n, (want, got) in enumerate(zip(expected, sections, strict=True), 1):
        if want != len(got):
            raise UserError(f"{path}: the header announces {want} {n}-grams but the file has "
                            f"{len(got)}: the file is truncated or corrupt")
    return header, sections


def _parse_header(path: Path, text: str) -> dict:
    try:
        header = json.loads(text)
    except ValueError as exc:
        raise UserError(f"{path}: the charrnn header line is not valid JSON ({exc})") from exc
    if not isinstance(header, dict) or not isinstance(header.get("tokenizer"), dict):
        raise UserError(f"{path}: the charrnn header line lacks the tokenizer")
    for key, ok in (("mode", lambda v: v in ("lines", "stream")),
                    ("unk", lambda v: v is None or type(v) is int),
                    ("unk_spelling", lambda v: type(v) is int)):
        if key in header and not ok(header[key]):
            raise UserError(f"{path}: the charrnn header line's {key!r} is "
                            f"{json.dumps(header[key])[:40]}, not what charrnn writes: the header "
                            "is damaged (delete that line to read the file as a foreign ARPA)")
    return header


def _parse_count(path: Path, number: int, line: str, n: int) -> int:
    match = re.fullmatch(r"ngram\s+(\d+)\s*=\s*(\d+)\s*", line)
    if not match or int(match.group(1)) != n:
        raise UserError(f"{path}:{number}: bad count line {line!r} (expected 'ngram {n}=COUNT': "
                        "the counts run from order 1 up, one line each)")
    return int(match.group(2))


def _foreign_tokenizer(path: Path, unigrams: list[str]) -> WordTokenizer:
    names = [f[1] for f in map(_SPLIT.split, unigrams) if len(f) >= 2]
    if "<eos>" in names:
        raise UserError(f"{path}: the word '<eos>' clashes with charrnn's line-break token (a "
                        "sentence's end here is </s>): rename it in the file, e.g. to <eos_>, "
                        "and in the text you score with it")
    for special in ("</s>", "<s>"):
        if special not in names:
            raise UserError(f"{path} has no {special} unigram: not a sentence-level ARPA model")
    rest = [w for w in names if w not in RESERVED]
    return WordTokenizer([EOS, UNK, *rest])


def _parse(path: Path, lines: list[str], n: int, highest: bool
           ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """log10 p, log10 back-off and the words (single-spaced) of each n-gram line."""
    logp = np.empty(len(lines))
    backoff = np.zeros(len(lines))
    words = []
    for i, line in enumerate(lines):
        fields = line.split("\t")
        if len(fields) in (2, 3) and "" in fields[1].split(" "):  # "-1.2<TAB><TAB>-0.1"
            raise UserError(f"{path}: {n}-gram line {line[:80]!r} has an empty word")
        if len(fields) in (2, 3) and fields[1].count(" ") != n - 1:  # tab-separated, words off
            raise UserError(f"{path}: {n}-gram line {line[:80]!r} has "
                            f"{fields[1].count(' ') + 1} words; the {n}-grams have {n}")
        if not (len(fields) in (2, 3) and fields[1].count(" ") == n - 1 and "" not in fields
                and "" not in fields[1].split(" ")):
            parts = _SPLIT.split(line)
            if len(parts) not in (n + 1, n + 2):
                raise UserError(f"{path}: bad {n}-gram line {line[:80]!r}")
            fields = [parts[0], " ".join(parts[1:n + 1])] + parts[n + 1:]
        try:
            logp[i] = float(fields[0])
            if len(fields) == 3:
                backoff[i] = float(fields[2])
        except ValueError as exc:
            raise UserError(f"{path}: bad number in {n}-gram line {line[:80]!r}") from exc
        if math.isnan(logp[i]) or not backoff[i] < math.inf:  # (NaN is never below inf)
            raise UserError(f"{path}: {n}-gram line {line[:80]!r} has a probability or back-off "
                            "that is not a number: not a valid ARPA model")
        if logp[i] > 1e-6:  # log10 of a probability is never above 0
            raise UserError(f"{path}: {n}-gram line {line[:80]!r} has a positive log10 "
                            "probability: not a valid ARPA model")
        if highest and backoff[i] != 0:  # as KenLM: nothing backs off from the highest order
            raise UserError(f"{path}: {n}-gram line {line[:80]!r} has a back-off, and {n} is the "
                            "model's highest order: not a valid ARPA model")
        words.append(fields[1])
    if len(set(words)) != len(words):
        seen: set[str] = set()
        twice = next(w for w in words if w in seen or seen.add(w))
        raise UserError(f"{path}: the {n}-gram {twice!r} is listed twice: not a valid ARPA model")
    return logp * LOG10, backoff * LOG10, words
