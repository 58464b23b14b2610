"""N-gram baselines: interpolated modified Kneser-Ney, estimated exactly as KenLM's lmplz.

    count.py       n-gram tables from a token stream (suffix-sorted, numba)
    kneser_ney.py  adjusted counts, discounts, pruning, interpolation → probabilities/back-offs
    model.py       the stored model (numpy arrays + JSON, no pickle) and scoring
    checks.py      a stored model is checked before any kernel reads it
    query.py       numba kernels: scoring and next-token distributions
    arpa.py        ARPA export/import (log10 probabilities and back-off weights)
    arpa_tables.py ARPA n-grams → our tables (missing contexts/suffixes become blanks)
    build.py       dataset → model → run folder
    runs.py        RUN → the n-gram run folder and its model
    sample.py      text generation

Their evaluation (`ngram eval`, `compare`, mixtures) is charrnn.evaluation's; the commands are
charrnn.cli.ngram's.

Nothing here imports torch, so the n-gram commands start fast.
"""
