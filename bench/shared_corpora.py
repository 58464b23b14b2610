"""Where the benchmarks find the real corpora: `../shared/corpora` beside the checkout, or the
folder named by $CHARRNN_SHARED_CORPORA (a machine where the checkout travels without its
neighbours, such as a lent GPU machine, brings a copy inside the checkout; bench/gpu_suite.sh)."""

from __future__ import annotations

import os
from pathlib import Path

CORPORA = Path(os.environ.get("CHARRNN_SHARED_CORPORA")
               or Path(__file__).resolve().parents[2] / "shared" / "corpora")
SHAKESPEARE = CORPORA / "tinyshakespeare.txt"
