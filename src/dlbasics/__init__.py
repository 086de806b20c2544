"""dlbasics: the basics of deep learning as a reproducible DVC + MLflow + PyTorch pipeline.

The package is layered; a module imports only from its own folder and from the floors below it
(tests/test_layout.py checks every import, those inside functions included):

    4  pipeline/  lessons/          the stages' work: train, select, the lessons
    3  search/  tracking/  report/  choosing a model; MLflow; judging and reporting
    2  learn/                       models, losses, the training loop, metrics
    1  data/  dvc/                  the data's files; what DVC must know about the code
    0  config/ cli errors io rng runtime trace   what every floor uses

Folders on one floor do not import each other. More in docs/layout.md.
"""
