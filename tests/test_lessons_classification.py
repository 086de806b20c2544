"""The classification lessons, trained for real on the default data at the default settings.

Each test trains the variants of params.yaml it needs (once per module, through `trained`)
and checks what the lesson says against an independent oracle: scikit-learn's metrics on the
model's own predictions, torch.nn twins sharing initial weights and batch order, autograd's
cross-entropy gradient, and the parsed params themselves.

Epochs, widths and learning rates are the repository's own: nothing is shrunk, so the
accuracy targets are the ones the pipeline is meant to reach. Only the runtime thread count
differs (1 instead of 2): on two busy cores two intra-op threads made training ~10x slower.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import prepared_data, trained_variants
from sklearn import metrics as skm

from dlbasics.config.loading import load_params, parse_params
from dlbasics.data.prepared import load_prepared
from dlbasics.learn.metrics import multilabel_predict
from dlbasics.learn.models import build_model
from dlbasics.learn.training import build_loss, build_optimizer, predict
from dlbasics.report.evaluation import score
from dlbasics.rng import torch_generator

PARAMS_YAML = Path(__file__).resolve().parents[1] / "params.yaml"
DATASETS = ("images", "breast_cancer", "multilabel")
VARIANTS = (
    "logistic", "softmax", "softmax_scratch", "mlp", "mlp_scratch", "dropout", "dropout_scratch",
    "mlp_sigmoid", "mlp_momentum", "mlp_rmsprop", "mlp_adam",
    "multilabel_sigmoid", "multilabel_softmax",
)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def params():
    """The repository's classification datasets and variants, unchanged (merges resolved)."""
    raw = yaml.safe_load(PARAMS_YAML.read_text())
    small = {
        "seed": raw["seed"],
        # One thread: the tests run on two busy cores (see the module docstring).
        "runtime": {"device": "cpu", "threads": 1},
        "tracking": raw["tracking"],
        "data": {k: raw["data"][k] for k in DATASETS},
        "prepare": {k: raw["prepare"][k] for k in DATASETS},
        "train": {k: raw["train"][k] for k in VARIANTS},
        "evaluate": raw["evaluate"],
    }
    return parse_params(small, source="test params")


@pytest.fixture(scope="module")
def prepared(params, tmp_path_factory) -> Path:
    return prepared_data(params, tmp_path_factory.mktemp("lessons_classification"))


@pytest.fixture(scope="module")
def trained(params, prepared):
    """name -> (model, history, data), each variant trained once, on first use."""
    yield from trained_variants(params, prepared)


def _test_outputs(trained, name: str):
    """(model, history, data, test targets y, test outputs out [N, n_outputs])."""
    model, history, data = trained(name)
    test = data.splits["test"]
    return model, history, data, test.y, predict(model, test.X)


def _test_score(params, trained, name: str) -> dict[str, float]:
    _, _, data, y, out = _test_outputs(trained, name)
    return score(params, data.task, data.manifest["n_outputs"], y, out)


# --------------------------------------------------------------------------- 1. targets


@pytest.mark.parametrize(
    "name, target",
    [("softmax", 0.95), ("softmax_scratch", 0.95), ("mlp", 0.97), ("mlp_scratch", 0.97),
     ("dropout", 0.97), ("logistic", 0.95)],
)
def test_default_variants_reach_their_test_accuracy(params, trained, name, target):
    _, history, data, y, out = _test_outputs(trained, name)
    got = score(params, data.task, data.manifest["n_outputs"], y, out)["accuracy"]
    # Oracle: sklearn's accuracy on the predicted class (argmax, or the logit's sign).
    pred = out.argmax(1) if data.task == "classification" else (out.reshape(-1) > 0).long()
    assert got == pytest.approx(skm.accuracy_score(y.numpy(), pred.numpy()), abs=1e-12)
    # The training loop's last test accuracy measured the same predictions.
    assert history[-1]["test_accuracy"] == pytest.approx(got, abs=1e-6)
    assert got >= target, f"{name}: test accuracy {got:.4f} < {target}"


# --------------------------------------------------------------------------- 2. scratch vs nn


@pytest.mark.parametrize("scratch, concise", [("softmax_scratch", "softmax"),
                                              ("mlp_scratch", "mlp")])
def test_scratch_variant_follows_its_torch_nn_twin(params, trained, scratch, concise):
    _, h_scratch, _ = trained(scratch)
    _, h_nn, _ = trained(concise)
    assert len(h_scratch) == len(h_nn) == params.train[concise].epochs
    # Same start and batch order: the whole loss curve is the same, not just the end point.
    np.testing.assert_allclose([r["train_loss"] for r in h_scratch],
                               [r["train_loss"] for r in h_nn], rtol=1e-4)
    acc_scratch = _test_score(params, trained, scratch)["accuracy"]
    acc_nn = _test_score(params, trained, concise)["accuracy"]
    assert abs(acc_scratch - acc_nn) <= 0.01


# --------------------------------------------------------------------------- 3. stability


def test_scratch_softmax_trains_with_logits_of_a_thousand(params, prepared):
    spec = params.train["softmax_scratch"]
    train = load_prepared(prepared / spec.dataset, splits=("train",))
    xb, yb = train.splits["train"].X[:64], train.splits["train"].y[:64]
    model = build_model(spec.model, xb.shape[1], train.manifest["n_outputs"],
                        torch_generator(params.seed, "init", spec.dataset))
    with torch.no_grad():  # scale W so the largest |logit| in the batch is 1000
        model.linear.weight.mul_(1000.0 / model(xb).abs().max())
        z = model(xb)  # [64, 10]
    assert z.abs().max() == pytest.approx(1000.0, rel=1e-4)
    # The case is real: the textbook exp(z) / sum exp(z) overflows to inf / inf here.
    assert torch.isnan(torch.exp(z) / torch.exp(z).sum(1, keepdim=True)).any()

    loss_fn, opt = build_loss(spec.loss), build_optimizer(spec.optimizer, model)
    w0 = model.linear.weight.detach().clone()
    loss = loss_fn(model(xb), yb)
    opt.zero_grad()
    loss.backward()
    # Oracle: torch's fused cross-entropy in float64 on the same weights, through autograd.
    w = w0.double().requires_grad_()
    b = model.linear.bias.detach().double().requires_grad_()
    ref = F.cross_entropy(xb.double() @ w + b, yb)
    ref.backward()
    assert torch.isfinite(loss) and loss.item() == pytest.approx(ref.item(), rel=1e-5)
    grad = model.linear.weight.grad
    assert torch.isfinite(grad).all() and grad.abs().max() > 0
    torch.testing.assert_close(grad.double(), w.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model.linear.bias.grad.double(), b.grad, rtol=1e-4, atol=1e-6)
    opt.step()
    assert torch.isfinite(model.linear.weight).all()
    assert not torch.equal(model.linear.weight, w0)


# --------------------------------------------------------------------------- 4. dropout


def test_nn_dropout_and_inverted_dropout_reach_the_target_alike(params, trained):
    acc = {n: _test_score(params, trained, n)["accuracy"] for n in ("dropout", "dropout_scratch")}
    assert min(acc.values()) >= 0.97, acc
    assert abs(acc["dropout"] - acc["dropout_scratch"]) <= 0.02, acc


@pytest.mark.parametrize("name", ["dropout", "dropout_scratch"])
def test_dropout_is_random_in_training_and_off_in_evaluation(trained, name):
    model, _, data = trained(name)
    X = data.splits["test"].X
    # Evaluation: dropout off, so predictions repeat exactly.
    assert torch.equal(predict(model, X), predict(model, X))
    with torch.no_grad():
        model.train()
        a, b = model(X), model(X)
        model.eval()
    assert not torch.allclose(a, b)
    # Control: the same network without dropout gives equal training-mode passes, so the
    # difference above is dropout's and not something else in train mode.
    mlp, _, _ = trained("mlp")
    with torch.no_grad():
        mlp.train()
        assert torch.equal(mlp(X), mlp(X))
        mlp.eval()


# --------------------------------------------------------------------------- 5. activations


def test_sigmoid_units_from_small_weights_learn_slower_than_relu(trained):
    _, relu, _ = trained("mlp")
    _, sigm, _ = trained("mlp_sigmoid")
    assert len(relu) == len(sigm)
    # Epochs 1, 5 and the last: the sigmoid network's training loss stays above ReLU's.
    for i in (0, 4, len(relu) - 1):
        assert sigm[i]["train_loss"] > relu[i]["train_loss"], (
            f"epoch {i + 1}: sigmoid {sigm[i]['train_loss']:.4f} "
            f"<= relu {relu[i]['train_loss']:.4f}"
        )


# --------------------------------------------------------------------------- 6. optimisers, overrides


@pytest.mark.parametrize("name", ["mlp", "mlp_momentum", "mlp_rmsprop", "mlp_adam"])
def test_every_optimiser_reaches_the_target(params, trained, name):
    acc = _test_score(params, trained, name)["accuracy"]
    assert acc >= 0.95, f"{name}: test accuracy {acc:.4f}"


def _without(spec, *path: tuple[str, ...]) -> dict:
    d = spec.model_dump()
    for keys in path:
        node = d
        for k in keys[:-1]:
            node = node[k]
        node.pop(keys[-1])
    return d


def test_variants_override_only_their_own_keys():
    """'params overrides, not copies': each variant differs from mlp in what it is about."""
    train = load_params(PARAMS_YAML).train
    optimisers = ["mlp", "mlp_momentum", "mlp_rmsprop", "mlp_adam"]
    for name in optimisers[1:]:
        assert _without(train[name], ("optimizer",)) == _without(train["mlp"], ("optimizer",))
    assert len({train[n].optimizer.model_dump_json() for n in optimisers}) == len(optimisers)

    activations = ["mlp_sigmoid", "mlp_tanh", "mlp_leaky_relu", "mlp_prelu"]
    for key, names in (("activation", activations),
                       ("init", ["mlp_xavier", "mlp_default_init"])):
        values = {getattr(train["mlp"].model, key)}
        for name in names:
            spec = train[name]
            if name == "mlp_leaky_relu":  # its slope (the book's 0.2) belongs to the activation
                slope = {"negative_slope": train["mlp"].model.negative_slope}
                spec = spec.model_copy(update={"model": spec.model.model_copy(update=slope)})
            assert _without(spec, ("model", key)) == _without(train["mlp"], ("model", key))
            values.add(getattr(train[name].model, key))
        assert len(values) == len(names) + 1, (key, values)  # each one really differs


# --------------------------------------------------------------------------- 7. multi-label


@pytest.mark.parametrize("name", ["multilabel_sigmoid", "multilabel_softmax"])
def test_multilabel_training_and_metrics_match_sklearn(params, trained, name):
    _, history, data, y, out = _test_outputs(trained, name)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    # Its accuracy too (exact match: a row counts when every label is right), by scikit-learn
    # on the final model's answers (each label's logit > 0): what the history recorded, and
    # better than the best constant answer (the most common label set, for every row).
    yt = y.numpy().astype(np.int64)
    answers = (out.double().numpy() > 0).astype(np.int64)
    exact = skm.accuracy_score(yt, answers)
    assert history[-1]["test_accuracy"] == pytest.approx(exact, abs=1e-12)
    sets, counts = np.unique(yt, axis=0, return_counts=True)
    constant = skm.accuracy_score(yt, np.repeat(sets[counts.argmax()][None], len(yt), axis=0))
    assert exact > constant + 0.05, (exact, constant)
    assert history[-1]["train_accuracy"] > history[0]["train_accuracy"]
    got = score(params, data.task, data.manifest["n_outputs"], y, out)
    ev = params.evaluate
    z = out.double().numpy()  # [N, L] logits
    yt = y.numpy().astype(np.int64)
    # Independent predictions: sigmoid(z) >= t is z >= logit(t); top-K by a numpy sort.
    by_threshold = (z >= np.log(ev.multilabel_threshold / (1 - ev.multilabel_threshold)))
    by_top_k = np.zeros_like(yt)
    np.put_along_axis(by_top_k, np.argsort(-z, axis=1)[:, : ev.multilabel_top_k], 1, axis=1)
    np.testing.assert_array_equal(
        multilabel_predict(z, threshold=ev.multilabel_threshold), by_threshold.astype(np.int64))
    np.testing.assert_array_equal(multilabel_predict(z, top_k=ev.multilabel_top_k), by_top_k)
    assert (by_top_k.sum(1) == ev.multilabel_top_k).all()

    for prefix, pred in (("", by_threshold.astype(np.int64)),
                         (f"top{ev.multilabel_top_k}_", by_top_k)):
        expected = {
            "exact_match": skm.accuracy_score(yt, pred),
            "zero_one_loss": skm.zero_one_loss(yt, pred),
            "jaccard_samples": skm.jaccard_score(yt, pred, average="samples", zero_division=0),
            "hamming_loss": skm.hamming_loss(yt, pred),
        }
        for k, v in expected.items():
            assert got[prefix + k] == pytest.approx(v, abs=1e-12), prefix + k


def test_sigmoid_multilabel_model_beats_predicting_no_labels(params, trained):
    got = _test_score(params, trained, "multilabel_sigmoid")
    _, _, data = trained("multilabel_sigmoid")
    yt = data.splits["test"].y.numpy().astype(np.int64)
    trivial = skm.hamming_loss(yt, np.zeros_like(yt))
    assert got["hamming_loss"] < trivial, (got["hamming_loss"], trivial)


# --------------------------------------------------------------------------- 8. metrics


def test_softmax_classifier_metrics(params, trained):
    _, _, data, y, out = _test_outputs(trained, "softmax")
    got = score(params, data.task, data.manifest["n_outputs"], y, out)
    expected_keys = {"accuracy", "log_loss", "top_1_accuracy", "top_3_accuracy"} | {
        f"{m}_{avg}" for m in ("precision", "recall", "f1") for avg in ("macro", "weighted")}
    assert expected_keys <= set(got)
    assert got["top_1_accuracy"] == pytest.approx(got["accuracy"], abs=1e-12)
    assert got["top_3_accuracy"] >= got["top_1_accuracy"]
    labels = list(range(data.manifest["n_outputs"]))
    probs = torch.softmax(out.double(), dim=1).numpy()  # [N, 10]
    assert got["log_loss"] == pytest.approx(skm.log_loss(y.numpy(), probs, labels=labels),
                                            rel=1e-9)
    pred = probs.argmax(1)
    for avg in ("macro", "weighted"):
        assert got[f"f1_{avg}"] == pytest.approx(
            skm.f1_score(y.numpy(), pred, labels=labels, average=avg, zero_division=0), abs=1e-12)
