"""dlbasics: the basics of deep learning as a reproducible DVC + MLflow + PyTorch pipeline."""
