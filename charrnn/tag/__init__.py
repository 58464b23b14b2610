"""Bidirectional RNN taggers (`charrnn tag`): chunking, word segmentation.

    config.py    TaggerConfig, TagTrainConfig (torch-free)
    data.py      CoNLL and segmented formats, B/M/E/S, the tagger's vocabularies
    model.py     char CNN, the Tagger (on charrnn.rnn's BiRNN), constrained Viterbi
    train.py     TagTask on the shared loop, `charrnn tag train`
    predict.py   batches, decoding and scoring with a trained tagger
    score.py     conlleval chunk F1, SIGHAN word P/R/F1
"""
