"""Batched training of a grid of small models: the oracle is separate training.fit runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

# fit_batched: BatchedTrainer (what the select stage runs) for whole fits, in benchmarks/.
from benchmarks.batched_fit import fit_batched
from dlbasics.config.variants import ModelSpec, OptimizerSpec
from dlbasics.data.prepared import Split
from dlbasics.learn.batched import BATCHED_MAX_WEIGHTS, batched_is_faster, n_weights
from dlbasics.learn.models import build_model
from dlbasics.learn.training import DivergenceError, build_loss, build_optimizer, fit

N, F, C = 300, 12, 4
EPOCHS, BATCH, SEED = 4, 32, 7

# Differing lr, momentum and weight decay across the configurations.
CONFIGS = [
    OptimizerSpec(lr=0.1),
    OptimizerSpec(lr=0.05, momentum=0.9, weight_decay=0.01),
    OptimizerSpec(lr=0.2, weight_decay=0.1),
    OptimizerSpec(lr=0.01, momentum=0.5),
]
SPECS = {
    "softmax": ModelSpec(kind="linear"),
    "mlp": ModelSpec(kind="mlp", hidden=[16, 8], activation="tanh"),
}


pytestmark = pytest.mark.usefixtures("one_thread")


def data(loss: str):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(N, F, generator=g)
    y = torch.randint(0, C, (N,), generator=g) if loss == "cross_entropy" else torch.randn(
        N, C, generator=g)
    return X, y


def inits(spec: ModelSpec, k: int) -> list[dict[str, torch.Tensor]]:
    """Each configuration its own initial weights."""
    return [build_model(spec, F, C, torch.Generator().manual_seed(100 + i)).state_dict()
            for i in range(k)]


def separate(spec, opt_spec, init, X, y, loss):
    """The oracle: training.fit with build_optimizer, same init, same batch-order seed."""
    model = build_model(spec, F, C, torch.Generator())
    model.load_state_dict(init)
    history = fit(model, build_loss(loss), build_optimizer(opt_spec, model), Split(X, y), None,
                  epochs=EPOCHS, batch_size=BATCH, generator=torch.Generator().manual_seed(SEED),
                  task="classification" if loss == "cross_entropy" else "regression")
    return model, [r["train_loss"] for r in history]


def batched(spec, configs, init_states, X, y, loss):
    return fit_batched(spec, F, C, configs, init_states, X, y, loss=loss, epochs=EPOCHS,
                       batch_size=BATCH, generator=torch.Generator().manual_seed(SEED))


def assert_matches(fit_result, model, losses):
    assert fit_result.diverged_epoch is None
    state = model.state_dict()
    assert fit_result.state_dict.keys() == state.keys()
    for key, value in state.items():
        torch.testing.assert_close(fit_result.state_dict[key], value, rtol=0, atol=1e-6)
    assert fit_result.train_loss == pytest.approx(losses, abs=1e-6)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("kind", sorted(SPECS))
def test_batched_equals_separate_training(kind, loss):
    spec = SPECS[kind]
    X, y = data(loss)
    init_states = inits(spec, len(CONFIGS))
    results = batched(spec, CONFIGS, init_states, X, y, loss)
    for res, opt_spec, init in zip(results, CONFIGS, init_states):
        assert_matches(res, *separate(spec, opt_spec, init, X, y, loss))
    # The configurations did learn different things (the test would be vacuous otherwise).
    first = results[0].state_dict
    assert all((r.state_dict[k] - first[k]).abs().max() > 1e-3
               for r in results[1:] for k in list(first)[:1])


def test_result_loads_into_build_model():
    spec = SPECS["mlp"]
    X, y = data("cross_entropy")
    init_states = inits(spec, 2)
    res = batched(spec, CONFIGS[:2], init_states, X, y, "cross_entropy")
    model = build_model(spec, F, C, torch.Generator())
    model.load_state_dict(res[1].state_dict)  # strict: same keys and shapes
    # The loaded model is the one separate training makes: its outputs, by value, and its
    # accuracy against scikit-learn's on the same predictions.
    from sklearn.metrics import accuracy_score

    oracle, _ = separate(spec, CONFIGS[1], init_states[1], X, y, "cross_entropy")
    with torch.no_grad():
        out, want = model.eval()(X), oracle.eval()(X)
    torch.testing.assert_close(out, want, rtol=0, atol=1e-5)
    init = build_model(spec, F, C, torch.Generator())
    init.load_state_dict(init_states[1])
    with torch.no_grad():
        assert (out - init.eval()(X)).abs().max() > 1e-2  # it trained: not the initial weights
    acc = accuracy_score(y.numpy(), out.argmax(1).numpy())
    assert acc == accuracy_score(y.numpy(), want.argmax(1).numpy())


def test_diverging_configuration_is_flagged_and_others_still_match():
    spec, loss = SPECS["softmax"], "mse"
    X, y = data(loss)
    configs = [CONFIGS[0], OptimizerSpec(lr=100.0, momentum=0.9), CONFIGS[1]]
    init_states = inits(spec, len(configs))
    results = batched(spec, configs, init_states, X, y, loss)

    with pytest.raises(DivergenceError) as err:
        separate(spec, configs[1], init_states[1], X, y, loss)
    bad = results[1]
    assert bad.diverged_epoch == err.value.epoch
    assert bad.state_dict is None
    assert len(bad.train_loss) == err.value.epoch - 1
    for i in (0, 2):
        assert_matches(results[i], *separate(spec, configs[i], init_states[i], X, y, loss))


def test_biases_are_not_decayed():
    # With X = 0 the weights get no gradient: only decay moves them. The biases get the same
    # gradients with and without decay, and must not be decayed themselves.
    spec, loss = SPECS["softmax"], "mse"
    X = torch.zeros(N, F)  # no input signal: the weights' gradient is 0, only decay moves them
    y = torch.randn(N, C, generator=torch.Generator().manual_seed(1))
    init = inits(spec, 1)[0]
    decayed, plain = batched(
        spec, [OptimizerSpec(lr=0.1, weight_decay=0.5), OptimizerSpec(lr=0.1)], [init, init],
        X, y, loss,
    )
    steps = EPOCHS * -(-N // BATCH)
    torch.testing.assert_close(decayed.state_dict["weight"],
                               init["weight"] * (1 - 0.1 * 0.5) ** steps)
    torch.testing.assert_close(plain.state_dict["weight"], init["weight"])
    # The biases follow the data alone: identical with and without weight decay.
    torch.testing.assert_close(decayed.state_dict["bias"], plain.state_dict["bias"], rtol=0,
                               atol=0)
    assert not torch.equal(plain.state_dict["bias"], init["bias"])


def test_rejects_what_it_cannot_batch():
    X, y = data("cross_entropy")
    with pytest.raises(ValueError, match="dropout"):
        fit_batched(ModelSpec(kind="mlp", hidden=[8], dropout=[0.5]), F, C, CONFIGS[:1],
                    inits(SPECS["softmax"], 1), X, y, loss="cross_entropy", epochs=1,
                    batch_size=BATCH, generator=torch.Generator())
    with pytest.raises(ValueError, match="sgd"):
        fit_batched(SPECS["softmax"], F, C, [OptimizerSpec(name="adam", lr=0.1)],
                    inits(SPECS["softmax"], 1), X, y, loss="cross_entropy", epochs=1,
                    batch_size=BATCH, generator=torch.Generator())


def test_size_rule():
    assert batched_is_faster(ModelSpec(kind="linear"), 784, 10, 48)  # softmax, Fashion-MNIST
    assert batched_is_faster(ModelSpec(kind="mlp", hidden=[256]), 64, 10, 48)  # digits MLP
    assert not batched_is_faster(ModelSpec(kind="mlp", hidden=[256]), 784, 10, 48)
    assert not batched_is_faster(ModelSpec(kind="linear"), 784, 10, 1)
    assert not batched_is_faster(ModelSpec(kind="mlp", hidden=[8], dropout=[0.5]), 4, 2, 48)
    assert BATCHED_MAX_WEIGHTS > 784 * 10 + 10


def test_n_weights_counts_what_build_model_holds():
    for spec, n_in, n_out in [(ModelSpec(kind="linear"), 784, 10),
                              (ModelSpec(kind="mlp", hidden=[256]), 64, 10),
                              (ModelSpec(kind="mlp", hidden=[16, 8], activation="tanh"), 12, 4)]:
        model = build_model(spec, n_in, n_out, torch.Generator())
        assert n_weights(spec, n_in, n_out) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("same_seed", [True, False])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_folds_as_members_equal_separate_training_of_each_fold(loss, same_seed):
    # K folds of one size stacked as K * G members of one trainer, each fold's batch order from
    # its own generator (one seed: the shared-order path; different seeds: one order per fold).
    # Every (fold, configuration) equals training.fit on that fold alone.
    spec, k, n = SPECS["mlp"], 3, 90
    X, y = data(loss)
    rows = [torch.arange(f, N, k)[:n] for f in range(k)]  # k disjoint folds of n rows
    Xf, yf = torch.stack([X[r] for r in rows]), torch.stack([y[r] for r in rows])
    seeds = [SEED] * k if same_seed else [SEED + f for f in range(k)]
    init_states = inits(spec, len(CONFIGS))
    from dlbasics.learn.batched import BatchedTrainer

    trainer = BatchedTrainer(spec, F, C, CONFIGS, init_states, Xf, yf, loss=loss,
                             batch_size=BATCH,
                             generator=[torch.Generator().manual_seed(s) for s in seeds])
    losses = [trainer.epoch() for _ in range(EPOCHS)]  # [epoch][config][fold]
    assert len(losses[0]) == len(CONFIGS) and all(len(c) == k for c in losses[0])
    for f in range(k):
        for g, (opt_spec, init) in enumerate(zip(CONFIGS, init_states)):
            model = build_model(spec, F, C, torch.Generator())
            model.load_state_dict(init)
            history = fit(model, build_loss(loss), build_optimizer(opt_spec, model),
                          Split(Xf[f], yf[f]), None, epochs=EPOCHS, batch_size=BATCH,
                          generator=torch.Generator().manual_seed(seeds[f]),
                          task="classification" if loss == "cross_entropy" else "regression")
            got = trainer.state_dict(g, f)
            for key, value in model.state_dict().items():
                torch.testing.assert_close(got[key], value, rtol=0, atol=1e-6)
            assert [e[g][f] for e in losses] == pytest.approx(
                [r["train_loss"] for r in history], abs=1e-6)
            with torch.no_grad():
                torch.testing.assert_close(trainer.outputs(Xf)[f, g], model(Xf[f]), rtol=0,
                                           atol=1e-5)
    # Dropping a configuration drops it on every fold; the others keep their weights.
    before = trainer.state_dict(2, 1)
    trainer.keep([0, 2])
    assert trainer.alive == [0, 2]
    for key, value in before.items():
        assert torch.equal(trainer.state_dict(1, 1)[key], value)
