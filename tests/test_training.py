"""Tests for dlbasics.learn.training.

Oracles: closed-form least squares against a trained linear regression, hand-computed
optimiser steps against torch.optim, a recording model that sees which rows each epoch
visited, and a divergence whose epoch follows from the update rule in closed form.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from dlbasics.config.variants import ModelSpec, OptimizerSpec
from dlbasics.data.prepared import Split
from dlbasics.learn.models import build_model
from dlbasics.learn.training import (
    DivergenceError,
    build_loss,
    build_optimizer,
    build_penalty,
    evaluate_split,
    fit,
    predict,
    train_epoch,
    weights_of,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _regression(n: int = 200, seed: int = 0) -> tuple[Split, torch.Tensor, float]:
    """X [n, 3] ~ N(0, 1); y [n, 1] = X w + b + N(0, 0.1^2)."""
    g = _gen(seed)
    w, b = torch.tensor([[2.0], [-3.4], [0.7]]), 4.2
    X = torch.randn(n, 3, generator=g)
    y = X @ w + b + 0.1 * torch.randn(n, 1, generator=g)
    return Split(X, y), w, b


def _classification(n: int = 240, seed: int = 0) -> Split:
    """Three Gaussian blobs in 5 dimensions: X [n, 5], y [n] int64."""
    g = _gen(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    centres = 3.0 * torch.randn(3, 5, generator=g)
    return Split(centres[y] + torch.randn(n, 5, generator=g), y)


def _fit_linear(train: Split, *, init_seed=1, batch_seed=2, epochs=5, batch_size=16, lr=0.05,
                val: Split | None = None):
    spec = ModelSpec(kind="linear", init="normal")
    model = build_model(spec, train.X.shape[1], 1, _gen(init_seed))
    opt = build_optimizer(OptimizerSpec(name="sgd", lr=lr), model)
    history = fit(model, build_loss("mse"), opt, train, val, epochs=epochs, batch_size=batch_size,
                  generator=_gen(batch_seed), task="regression")
    return model, history


# --------------------------------------------------------------------------- convergence


def test_linear_regression_reaches_closed_form_least_squares():
    train, _, _ = _regression()
    model, history = _fit_linear(train, epochs=60, batch_size=200, lr=0.3)  # full-batch GD
    A = torch.cat([train.X, torch.ones(len(train.X), 1)], dim=1).double()
    coef = torch.linalg.lstsq(A, train.y.double()).solution.squeeze(1)  # [w1, w2, w3, b]
    got = torch.cat([model.weight.detach().squeeze(0), model.bias.detach()]).double()
    torch.testing.assert_close(got, coef, atol=1e-4, rtol=0)
    # The last epoch's loss is the least-squares residual (the noise variance).
    resid = ((A @ coef - train.y.double().squeeze(1)) ** 2).mean().item()
    assert history[-1]["train_loss"] == pytest.approx(resid, rel=0.05)


def test_minibatch_sgd_lands_near_least_squares():
    train, _, _ = _regression()
    model, history = _fit_linear(train, epochs=30, batch_size=10, lr=0.03)
    A = torch.cat([train.X, torch.ones(len(train.X), 1)], dim=1)
    coef = torch.linalg.lstsq(A, train.y).solution.squeeze(1)
    got = torch.cat([model.weight.detach().squeeze(0), model.bias.detach()])
    torch.testing.assert_close(got, coef, atol=2e-2, rtol=0)
    assert history[-1]["train_loss"] < history[0]["train_loss"] / 100


# --------------------------------------------------------------------------- determinism


def test_same_seeds_give_bit_identical_runs():
    train, _, _ = _regression()
    val, _, _ = _regression(n=50, seed=9)
    m1, h1 = _fit_linear(train, val=val)
    m2, h2 = _fit_linear(train, val=val)
    assert h1 == h2
    assert torch.equal(m1.weight, m2.weight) and torch.equal(m1.bias, m2.bias)


def test_batch_seed_changes_the_result():
    train, _, _ = _regression()
    m1, h1 = _fit_linear(train, batch_seed=2)
    m2, h2 = _fit_linear(train, batch_seed=3)
    assert not torch.equal(m1.weight, m2.weight)
    assert h1 != h2


def test_fit_draws_nothing_from_the_global_rng():
    train, _, _ = _regression(n=40)
    state = torch.get_rng_state()
    _fit_linear(train, epochs=2)
    assert torch.equal(torch.get_rng_state(), state)


# --------------------------------------------------------------------------- batches


class Recorder(nn.Module):
    """A linear model that records, per training forward, the row ids (column 0) it saw."""

    def __init__(self, n_in: int):
        super().__init__()
        self.inner = nn.Linear(n_in, 1)
        self.batches: list[list[int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.batches.append(x[:, 0].long().tolist())
        return self.inner(x)


@pytest.mark.parametrize("n, batch_size", [(23, 5), (20, 5), (7, 10)])
def test_each_epoch_visits_every_row_once_including_the_last_partial_batch(n, batch_size):
    ids = torch.arange(n, dtype=torch.float32)[:, None]  # column 0 names the row
    X = torch.cat([ids, torch.randn(n, 2, generator=_gen(0))], dim=1)
    train = Split(X, torch.randn(n, 1, generator=_gen(1)))
    model = Recorder(3)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    epochs = 3
    fit(model, nn.MSELoss(), opt, train, train, epochs=epochs, batch_size=batch_size,
        generator=_gen(5), task="regression")
    per_epoch = math.ceil(n / batch_size)
    assert len(model.batches) == epochs * per_epoch  # evaluation forwards are not recorded
    orders = []
    for e in range(epochs):
        batches = model.batches[e * per_epoch : (e + 1) * per_epoch]
        sizes = [len(b) for b in batches]
        tail = [n % batch_size] if n % batch_size else []  # the last, partial batch
        assert sizes == [batch_size] * (n // batch_size) + tail
        seen = [i for b in batches for i in b]
        assert sorted(seen) == list(range(n))
        orders.append(seen)
    assert orders[0] != orders[1] or orders[1] != orders[2]  # reshuffled per epoch


def test_train_loss_is_the_sample_weighted_mean_over_batches():
    # One epoch with lr 0: the weights never move, so the epoch loss is the full-data loss.
    train, _, _ = _regression(n=23)
    model = build_model(ModelSpec(kind="linear", init="normal", init_std=0.5), 3, 1, _gen(0))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    (rec,) = fit(model, nn.MSELoss(), opt, train, None, epochs=1, batch_size=5,
                 generator=_gen(0), task="regression")
    with torch.no_grad():
        full = nn.functional.mse_loss(model(train.X), train.y).item()
    assert rec["train_loss"] == pytest.approx(full, rel=1e-5)
    assert set(rec) == {"epoch", "train_loss"}


# --------------------------------------------------------------------------- divergence


def test_divergence_is_raised_at_the_epoch_the_update_rule_predicts():
    # All x = 100, all y = 0, one full batch per epoch. With r = w*x + b the SGD step on the
    # MSE is r' = r * g, g = 1 - 2 lr (x^2 + 1). From w = 0.01, b = 0 (r0 = 1) and lr = 1e3:
    # |g| ~ 2.0e7, so epoch k reports loss r_{k-1}^2 = g^(2(k-1)):
    # epoch 3: ~1.6e29 (finite in float32), epoch 4: ~6.4e43 > 3.4e38 -> inf.
    n, x, lr = 8, 100.0, 1e3
    g = 1 - 2 * lr * (x * x + 1)
    expected = next(k for k in range(1, 10) if (g * g) ** (k - 1) > torch.finfo(torch.float32).max)
    assert expected == 4
    train = Split(torch.full((n, 1), x), torch.zeros(n, 1))
    model = nn.Linear(1, 1)
    with torch.no_grad():
        model.weight.fill_(0.01), model.bias.zero_()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    seen: list[dict] = []
    with pytest.raises(DivergenceError) as info:
        fit(model, nn.MSELoss(), opt, train, None, epochs=10, batch_size=n, generator=_gen(0),
            task="regression", on_epoch=seen.append)
    err = info.value
    assert err.epoch == expected and err.lr == lr and not math.isfinite(err.loss)
    msg = str(err)
    assert f"epoch {expected}" in msg and "learning rate" in msg and "standardise" in msg
    assert "\n" not in msg
    # The finite epochs before it were reported and follow r^2 = g^(2(k-1)).
    assert [r["epoch"] for r in seen] == list(range(1, expected))
    for r in seen:
        assert r["train_loss"] == pytest.approx((g * g) ** (r["epoch"] - 1), rel=1e-3)


def test_divergence_through_the_config_optimizer_on_unscaled_data():
    # The largest lr the config allows (100) still diverges on inputs in the hundreds.
    g = _gen(0)
    X = 300.0 * torch.randn(64, 4, generator=g)
    train = Split(X, X.sum(1, keepdim=True))
    model = build_model(ModelSpec(kind="linear", init="normal"), 4, 1, _gen(1))
    opt = build_optimizer(OptimizerSpec(name="sgd", lr=100), model)
    with pytest.raises(DivergenceError, match=r"diverged at epoch \d+.*lower the learning rate"):
        fit(model, build_loss("mse"), opt, train, None, epochs=50, batch_size=16,
            generator=_gen(2), task="regression")


# --------------------------------------------------------------------------- optimisers


def test_weight_decay_applies_to_weights_not_biases():
    spec = OptimizerSpec(name="sgd", lr=0.1, weight_decay=0.5)
    model = build_model(ModelSpec(kind="mlp", hidden=[4], init="default"), 3, 2, _gen(0))
    opt = build_optimizer(spec, model)
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    by_id = {id(p): grp["weight_decay"] for grp in opt.param_groups for p in grp["params"]}
    assert {by_id[id(p)] for p in weights} == {0.5}
    assert {by_id[id(p)] for p in biases} == {0.0}
    assert len(by_id) == len(list(model.parameters()))  # every parameter, once

    # One step against the hand computation p' = p - lr (grad + wd * p) for weights only.
    x = torch.randn(6, 3, generator=_gen(1))
    y = torch.randint(0, 2, (6,), generator=_gen(2))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss = nn.functional.cross_entropy(model(x), y)
    grads = dict(zip(before, torch.autograd.grad(loss, list(model.parameters()))))
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    for n, p in model.named_parameters():
        decay = 0.5 * before[n] if n.endswith("weight") else 0.0
        torch.testing.assert_close(p.detach(), before[n] - 0.1 * (grads[n] + decay))


@pytest.mark.parametrize(
    "spec, cls, expected",
    [
        (OptimizerSpec(name="sgd", lr=0.2, momentum=0.9), torch.optim.SGD,
         {"lr": 0.2, "momentum": 0.9}),
        (OptimizerSpec(name="adam", lr=0.001, betas=[0.8, 0.95]), torch.optim.Adam,
         {"lr": 0.001, "betas": (0.8, 0.95)}),
        (OptimizerSpec(name="rmsprop", lr=0.01, alpha=0.9, momentum=0.5), torch.optim.RMSprop,
         {"lr": 0.01, "alpha": 0.9, "momentum": 0.5}),
    ],
    ids=["sgd", "adam", "rmsprop"],
)
def test_optimizers_carry_their_hyper_parameters(spec, cls, expected):
    model = nn.Linear(3, 2)
    opt = build_optimizer(spec, model)
    assert type(opt) is cls
    for grp in opt.param_groups:
        for k, v in expected.items():
            assert tuple(grp[k]) == v if isinstance(v, tuple) else grp[k] == v, (k, grp[k])


def test_adam_step_matches_torch_adam_with_the_same_settings():
    spec = OptimizerSpec(name="adam", lr=0.01, betas=[0.8, 0.95], weight_decay=0.1)
    ours = build_model(ModelSpec(kind="linear"), 4, 2, _gen(0))
    ref = build_model(ModelSpec(kind="linear"), 4, 2, _gen(0))
    opt = build_optimizer(spec, ours)
    ref_opt = torch.optim.Adam(
        [{"params": [ref.weight], "weight_decay": 0.1},
         {"params": [ref.bias], "weight_decay": 0.0}],
        lr=0.01, betas=[0.8, 0.95],
    )
    x, y = torch.randn(8, 4, generator=_gen(1)), torch.randint(0, 2, (8,), generator=_gen(2))
    for _ in range(3):
        for m, o in ((ours, opt), (ref, ref_opt)):
            o.zero_grad()
            nn.functional.cross_entropy(m(x), y).backward()
            o.step()
    assert torch.equal(ours.weight, ref.weight) and torch.equal(ours.bias, ref.bias)


# --------------------------------------------------------------------------- histories


def test_classification_history_has_val_accuracy():
    blobs = _classification(n=300)
    train, val = Split(blobs.X[:240], blobs.y[:240]), Split(blobs.X[240:], blobs.y[240:])
    model = build_model(ModelSpec(kind="mlp", hidden=[16], init="default"), 5, 3, _gen(0))
    loss_fn = build_loss("cross_entropy")
    opt = build_optimizer(OptimizerSpec(name="sgd", lr=0.1), model)
    history = fit(model, loss_fn, opt, train, val, epochs=4, batch_size=32, generator=_gen(1),
                  task="classification")
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert all(set(r) == {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy"}
               for r in history)
    assert history[-1]["train_accuracy"] > history[0]["train_accuracy"]
    # The last record is the trained model's accuracy and loss on val, computed here directly.
    with torch.no_grad():
        out = model.eval()(val.X)
    accuracy = (out.argmax(1) == val.y).float().mean().item()
    assert history[-1]["val_accuracy"] == pytest.approx(accuracy)
    loss = nn.functional.cross_entropy(out, val.y).item()
    assert history[-1]["val_loss"] == pytest.approx(loss, rel=1e-5)
    assert history[-1]["val_accuracy"] > 0.9  # separable blobs


def test_train_accuracy_is_the_running_share_of_rows_each_batch_got_right():
    """With the weights held still (lr 0) the running accuracy of an epoch is exactly the
    model's accuracy on the whole training split; the loop's order does not matter."""
    blobs = _classification(n=300)
    train = Split(blobs.X, blobs.y)
    model = build_model(ModelSpec(kind="mlp", hidden=[16], init="default"), 5, 3, _gen(0))
    loss_fn = build_loss("cross_entropy")
    still = torch.optim.SGD(model.parameters(), lr=0.0)
    loss, accuracy = train_epoch(model, loss_fn, still, train.X, train.y, batch_size=32,
                                 generator=_gen(1), task="classification")
    with torch.no_grad():
        out = model.eval()(train.X)
    assert accuracy == (out.argmax(1) == train.y).sum().item() / 300
    assert loss == pytest.approx(nn.functional.cross_entropy(out, train.y).item(), rel=1e-5)
    _, none = train_epoch(model, loss_fn, still, train.X, train.y, batch_size=32,
                          generator=_gen(1), task=None)
    assert none is None


def test_regression_history_has_no_accuracy():
    train, _, _ = _regression(n=50)
    _, history = _fit_linear(train, val=train, epochs=2)
    assert all(set(r) == {"epoch", "train_loss", "val_loss"} for r in history)


def test_predict_uses_eval_mode_and_restores_training_mode():
    model = build_model(ModelSpec(kind="mlp", hidden=[32], dropout=[0.5]), 4, 2, _gen(0))
    x = torch.randn(20000, 4, generator=_gen(1))  # more than one chunk
    model.train()
    a = predict(model, x, chunk=4096)
    assert model.training
    with torch.no_grad():
        expected = model.eval()(x)
    assert torch.equal(a, expected)  # dropout off: no randomness, chunking changes nothing


def test_evaluate_split_accuracy_against_hand_count():
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))  # logits = x, so the prediction is argmax x
    X = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0]])
    y = torch.tensor([0, 0, 0, 1])  # rows 0, 2, 3 right
    m = evaluate_split(model, nn.CrossEntropyLoss(), Split(X, y), "classification")
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["loss"] == pytest.approx(nn.functional.cross_entropy(X, y).item())


def test_the_benchmarks_sources_path_sees_the_projects_pixels(tmp_path):
    """make bench times the sources' data path (torchvision's FashionMNIST class with ToTensor,
    on IDX files it writes) against the project's resident tensors: both must feed the model
    the same numbers, or the ratio compares different work."""
    from benchmarks.epochs import sources_dataset

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 12).astype(np.int64)
    data = sources_dataset(images, labels, tmp_path)
    assert len(data) == 12
    for i in (0, 5, 11):
        x, y = data[i]
        assert x.shape == (1, 28, 28) and y == labels[i]
        expected = torch.from_numpy(images[i].astype(np.float32) / 255)
        assert torch.equal(x[0], expected)


# --------------------------------------------------------------------------- the builders


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return {
        "out3": torch.randn(12, 3, generator=g, dtype=torch.float64),
        "out1": torch.randn(12, 1, generator=g, dtype=torch.float64),
        "labels": torch.randint(0, 3, (12,), generator=g),
        "binary": torch.randint(0, 2, (12,), generator=g),
        "multi": torch.randint(0, 2, (12, 3), generator=g),
        "target3": torch.randn(12, 3, generator=g, dtype=torch.float64),
    }


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_each_loss_against_its_formula():
    """Every loss params may name, against NumPy and scikit-learn on one batch."""
    from sklearn.metrics import log_loss

    from dlbasics.learn.training import LOSSES

    b = {k: v.numpy() for k, v in _batch().items()}
    t = _batch()
    p3 = np.exp(b["out3"]) / np.exp(b["out3"]).sum(1, keepdims=True)
    bce = lambda z, y: -(y * np.log(_sigmoid(z)) + (1 - y) * np.log(1 - _sigmoid(z)))  # noqa: E731
    onehot = np.eye(3)[b["labels"]]
    want = {
        "mse": (("out3", "target3"), ((b["out3"] - b["target3"]) ** 2).mean()),
        "squared_loss_scratch": (("out3", "target3"), ((b["out3"] - b["target3"]) ** 2).mean() / 2),
        "cross_entropy": (("out3", "labels"), log_loss(b["labels"], p3, labels=[0, 1, 2])),
        "cross_entropy_scratch": (("out3", "labels"), log_loss(b["labels"], p3, labels=[0, 1, 2])),
        "one_vs_all": (("out3", "labels"), bce(b["out3"], onehot).mean() * 3),
        "bce_with_logits": (("out1", "binary"), log_loss(b["binary"], _sigmoid(b["out1"][:, 0]))),
        "multilabel_soft_margin": (("out3", "multi"), bce(b["out3"], b["multi"]).mean()),
        "multilabel_softmax": (("out3", "multi"), -(b["multi"] * np.log(p3)).sum(1).mean()),
    }
    for name, ((o, y), value) in want.items():
        got = build_loss(name)(t[o], t[y])
        assert got.ndim == 0 and float(got) == pytest.approx(value, rel=1e-9), name
    assert set(want) <= set(LOSSES)


def test_weights_of_are_the_matrices_and_not_the_biases():
    model = build_model(ModelSpec(kind="mlp", hidden=[4, 3]), 5, 2, _gen(0))
    got = weights_of(model)
    assert [tuple(w.shape) for w in got] == [(4, 5), (3, 4), (2, 3)]
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(names[id(w)].endswith("weight") for w in got)


@pytest.mark.parametrize("kind, strength, l1_ratio", [("l2", 0.3, 0.5), ("l1", 0.2, 0.5),
                                                      ("elastic_net", 0.5, 0.25)])
def test_penalties_against_their_formulas_over_the_weights_only(kind, strength, l1_ratio):
    from dlbasics.config.variants import PenaltySpec

    model = build_model(ModelSpec(kind="mlp", hidden=[4]), 3, 2, _gen(1))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)  # biases far from 0: a penalty on them would show
    ws = [p.detach().double().numpy() for n, p in model.named_parameters() if "weight" in n]
    l1 = sum(np.abs(w).sum() for w in ws)
    l2 = sum((w ** 2).sum() for w in ws) / 2
    want = strength * {"l1": l1, "l2": l2,
                       "elastic_net": l1_ratio * l1 + (1 - l1_ratio) * l2}[kind]
    penalty = build_penalty(PenaltySpec(kind=kind, strength=strength, l1_ratio=l1_ratio), model)
    assert float(penalty()) == pytest.approx(want, rel=1e-6)
    assert build_penalty(None, model) is None
    assert build_penalty(PenaltySpec(kind=kind, strength=0.0), model) is None


@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop", "sgd_scratch"])
def test_optimizers_decay_the_weights_and_never_the_biases(name):
    from dlbasics.learn.scratch import ScratchSGD

    model = build_model(ModelSpec(kind="mlp", hidden=[4]), 3, 2, _gen(2))
    spec = OptimizerSpec(name=name, lr=0.05, weight_decay=0.3)
    opt = build_optimizer(spec, model)
    weights = {id(w) for w in weights_of(model)}
    biases = {id(p) for p in model.parameters() if id(p) not in weights}
    if name == "sgd_scratch":
        assert type(opt) is ScratchSGD and opt.lr == 0.05
        decay = {id(p): wd for p, wd in opt.entries}
    else:
        assert opt.defaults["lr"] == 0.05
        decay = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
        assert all(g["lr"] == 0.05 for g in opt.param_groups)
    assert set(decay) == weights | biases
    assert all(decay[w] == 0.3 for w in weights) and all(decay[b] == 0.0 for b in biases)


def test_one_vs_all_reads_the_class_count_from_the_outputs():
    # A batch without the last class still has K columns of logits: each is its own classifier.
    out = torch.tensor([[0.5, -1.0, 2.0], [1.0, 0.0, -0.5]], dtype=torch.float64)
    y = torch.tensor([0, 1])
    z, t = out.numpy(), np.eye(3)[y.numpy()]
    want = (-(t * np.log(_sigmoid(z)) + (1 - t) * np.log(1 - _sigmoid(z)))).mean() * 3
    assert float(build_loss("one_vs_all")(out, y)) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("name", ["cross_entropy", "nll"])
def test_class_weights_are_sklearns_sample_weights(name):
    from sklearn.metrics import log_loss

    b = _batch(3)
    w = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)
    z = b["out3"].numpy()
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = b["labels"].numpy()
    want = log_loss(y, p, labels=[0, 1, 2], sample_weight=w.numpy()[y])
    assert float(build_loss(name, weight=w)(b["out3"], b["labels"])) == pytest.approx(want,
                                                                                       rel=1e-9)
