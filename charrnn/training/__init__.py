"""The parts every training loop shares (language models, taggers, the fill model).

    config.py     LoopConfig: optimisation, budget, evaluation, seed, device, threads (torch-free)
    schedule.py   budget → steps, warmup + cosine, ETA
    optim.py      optimizers by name (rprop too), one weight-decay rule, optimizer state ↔ tensors
    task.py       the Task protocol, StatelessTask, Progress, the window between sync points
    loop.py       Loop: one step, rollback, checkpoints, resume; the run — sync points, logging,
                  evaluation, saving, patience, stopping
    saving.py     how often checkpoints are written (at most a tenth of the time)
    stop.py       Ctrl-C / SIGTERM / SIGHUP finish the step and save
    reporters.py  plain and silent reporters (the live one is charrnn.tui.train_view)
    metrics.py    metrics.jsonl
"""
