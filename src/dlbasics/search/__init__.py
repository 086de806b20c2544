"""How a model is chosen (floor 3: imports learn/, data/ and floor 0; not tracking/ or report/).

`selection` (K folds and the cross-validated score), `gridsearch` (a `select` search's grid,
in lockstep and batched where that is faster) and `cluster` (the same on a Ray cluster).
"""
