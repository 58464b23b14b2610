"""N-gram baselines: interpolated modified Kneser-Ney, estimated exactly as KenLM's lmplz.

    count.py       n-gram tables from a token stream (suffix-sorted, numba)
    kneser_ney.py  adjusted counts, discounts, pruning, interpolation → probabilities/back-offs
    model.py       the stored model (numpy arrays + JSON, no pickle) and scoring
    checks.py      a stored model is checked before any kernel reads it
    query.py       numba kernels: scoring and next-token distributions
    arpa.py        ARPA export/import (log10 probabilities and back-off weights)
    arpa_tables.py ARPA n-grams → our tables (missing contexts/suffixes become blanks)
    build.py       dataset → model → run folder
    evaluate.py    nats/token, perplexity, bits/char (the same fields as `charrnn eval`)
    sample.py      text generation
    compare.py     `charrnn compare`: every run, RNN and n-gram, on the same text
    cli.py         the `charrnn ngram ...` commands

Nothing here imports torch, so the n-gram commands start fast.
"""
