"""Plans: a command line resolved once into what the library runs.

    command line ─ CLI parses ─→ Request: every option's value, and which ones were typed
                                    │
      facts the library reports ────┤  the data's level and size, the device, the run resumed or
      (lm.job.TrainJob)             │  fine-tuned from, what this machine measured fastest
                                    ▼
                      rules.py: the one table — where each option applies, and each situation's
                      defaults with the measurement behind them (refusals and --help read it)
                                    ▼
                      TrainPlan: mode (new, resume, fine-tune), preprocessing, the full config,
                      the run target, and where each value that is not the default came from
                                    ▼
                      the library job: resolved configs only, never what was typed

Torch-free to import: `charrnn --help` and the n-gram commands read the rules too.
"""
