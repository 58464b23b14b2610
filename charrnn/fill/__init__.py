"""Fill in the blank (`charrnn fill`).

    syntax.py     the blank syntax: ___, {N}, {M,N}, {M,}, escapes
    config.py     FillConfig, FillTrainConfig, SearchOptions, FillOptions (torch-free)
    families.py   the models taking part (forward, backward, masked, n-gram) and their methods
    search.py     beams and whole-window rescoring for one blank
    engine.py     the methods, blank by blank (a beam over blanks)
    model.py      the masked BiRNN
    train.py      FillTask on the shared loop (`charrnn train --task fill`)
    evaluate.py   `fill eval`: hidden words or characters, top-1 / top-5
"""
