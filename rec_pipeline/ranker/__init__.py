"""The hybrid ranker: the model (model.py) and its training loop (train.py)."""
