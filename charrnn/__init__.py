"""charrnn: recurrent language models (char, word, subword) from one CLI.

Kept import-light on purpose: `charrnn --help` and the n-gram commands never import torch.
"""

__version__ = "0.1.0"
