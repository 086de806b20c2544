"""How a model learns (floor 2: imports data/ and floor 0).

`tasks` (per task: the primary metric, the prediction and selection rules), `models` (torch.nn
and the taught `scratch` versions), `training` (the loop, losses, optimisers, penalties),
`batched` (G configurations fitted as one batched model), `metrics` (scikit-learn's) and
`modelfiles` (a trained model's directory: weights, model.json, history).
"""
