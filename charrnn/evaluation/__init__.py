"""Evaluation: how good a model is, on one scale, alone or mixed, run by run or line by line.

    scores      the figures of a scored text: nats/token, perplexity, bits per character of the
                original text (char, word, subword and n-gram models on one scale), <unk> counts
    lm          `charrnn eval` of a language model (with --mix: its per-token mixture)
    ngram       `charrnn ngram eval` (the same fields)
    mix         RNN ⊕ n-gram: p = λ·p_rnn + (1−λ)·p_ngram per token, λ tuned by EM on val and
                remembered per checkpoint; what sampling and fill mix with
    linescore   `charrnn score`: each line on its own, as KenLM's query
    compare     `charrnn compare`: every run on the same text, best first

Above the models (lm, ngram), which never import it: the sampler knows a mixture only by the
object it is handed (`Mixture.side`).
"""
