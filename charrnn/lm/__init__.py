"""Language models: the RNN LM, its training (TBPTT) and its use.

    config.py    ModelConfig, TrainConfig, SampleOptions (torch-free: the CLI's defaults)
    model.py     RNNLM (rnn / lstm / gru, tied, AWD regularisers); loading a checkpoint
    state.py     the carried recurrent state (LSTM pair or one tensor), in one place
    batching.py  stateful truncated-BPTT batch streams
    train.py     LMTask on the shared loop (carried state, DDP), Trainer
    job.py       `charrnn train`: inputs → dataset → run folder → Trainer, --resume
    sample.py    temperature / top-k / top-p / greedy / beam decoding
    fastpath.py  decoding steps: fused CPU step, CUDA-graph step, the module
    evaluate.py  scoring a text (carried state, streams)
    preview.py   a short sample of a model being trained
"""
