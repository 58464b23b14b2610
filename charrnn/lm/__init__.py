"""Language models: the RNN LM, its training (TBPTT) and its use.

    config.py    ModelConfig, TrainConfig, SampleOptions (torch-free: the CLI's defaults)
    model.py     RNNLM (rnn / lstm / gru, tied, AWD regularisers); loading a checkpoint
    softmax.py   the adaptive softmax (frequency clusters, exact probabilities)
    batching.py  stateful truncated-BPTT batch streams
    train.py     LMTask on the shared loop (carried state, DDP), Trainer
    job.py       `charrnn train`: TrainJob, the steps a plan drives (device, dataset, measurements,
                 run folder and its lock, Trainer), --resume, --init-from
    finetune.py  a parent run grown for new text (--init-from)
    speed.py     one training step timed per setting on this machine (precision, softmax, threads)
    sample.py    the Sampler: plain, batched, beam decoding; `charrnn sample`'s generate
    plain.py     prime and text; `charrnn sample --plain` of one CPU stream without torch
    decode.py    one step's maths: temperature, top-k / top-p, Gumbel-max, per-token stats
    tokenstream.py  K tokens per call: Chunk, TokenStream (exact lengths, surplus), torch-free
    chunks.py    the PyTorch engine: K Python-driven steps per call
    cpustream.py one CPU stream without torch: weights via NumPy, cpustep.py (NumPy) for
                 short samples and a stream's first 512 tokens, cpukernel.py (K steps
                 compiled by Numba; machinecode.py keeps its machine code and loads it
                 without numba, kernelargs.py packs its arguments) for the rest, on one or
                 two cores (cpulanes.py: measured)
    cudagraph.py K steps captured in one CUDA graph, double-buffered to pinned memory
    fastpath.py  decoding steps driven from Python: fused CPU step, the module
    scoring.py   -log p of each token of a text (carried state, streams)
    preview.py   a short sample of a model being trained
"""
