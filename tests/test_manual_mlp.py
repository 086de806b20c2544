"""Checks of scratch.ManualMLP's hand-written backprop (file 004, section 3.7) against oracles:
autograd on its own ``loss``, central differences, and torch.nn.functional."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from dlbasics.learn import scratch
from dlbasics.learn.scratch import (
    ManualMLP,
    ScratchSGD,
    numerical_gradient,
    scratch_cross_entropy,
    softmax,
)

ACTS = ["sigmoid", "relu", "tanh", "leaky_relu"]
OUTPUTS = ["softmax", "linear"]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make(activation: str, output: str, seed: int, sizes=(5, [6, 4], 3), **kw) -> ManualMLP:
    kw = {"init_std": 0.8, "init_bias": True, "dtype": torch.float64, **kw}
    # A large slope makes a wrong leaky branch (1 vs slope) visible in the gradients.
    slope = 0.2 if activation == "leaky_relu" else 0.01
    return ManualMLP(
        sizes[0], sizes[1], sizes[2], activation=activation, output=output,
        negative_slope=slope, generator=gen(seed), **kw,
    )


def batch(output: str, n: int, in_features: int, out_features: int, seed: int):
    g = gen(seed)
    x = torch.randn(n, in_features, generator=g, dtype=torch.float64)
    if output == "softmax":
        y = torch.randint(0, out_features, (n,), generator=g)
    else:
        y = torch.randn(n, out_features, generator=g, dtype=torch.float64)
    return x, y


def manual_grads(model: ManualMLP, x, y) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    loss = model.manual_backward(x, y)
    return loss, {n: p.grad.clone() for n, p in model.named_parameters()}


def autograd_grads(model: ManualMLP, x, y) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad()
    loss = model.loss(x, y)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def digits(n: int | None = None, dtype=torch.float32):
    data = load_digits()
    x = torch.tensor(data.data[:n] / 16.0, dtype=dtype)  # pixel values 0..16 -> [0, 1]
    y = torch.tensor(data.target[:n], dtype=torch.long)
    return x, y


# ----------------------------------------------------------------------------- gradient oracles


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("activation", ACTS)
def test_manual_backward_equals_autograd(activation, output):
    model = make(activation, output, seed=1)
    x, y = batch(output, 7, 5, 3, seed=2)
    loss, manual = manual_grads(model, x, y)
    ref_loss, auto = autograd_grads(model, x, y)
    assert set(manual) == {f"layers.{i}.{n}" for i in range(3) for n in ("weight", "bias")}
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-12)
    for name, g in auto.items():
        assert g.abs().max() > 1e-6, name  # a vanishing gradient would make the check vacuous
        assert torch.allclose(manual[name], g, rtol=1e-8, atol=1e-14), name


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("activation", ACTS)
def test_manual_backward_equals_central_differences(activation, output):
    model = make(activation, output, seed=3, sizes=(3, [4, 3], 2))
    x, y = batch(output, 5, 3, 2, seed=4)
    _, manual = manual_grads(model, x, y)
    params = list(model.parameters())
    before = [p.detach().clone() for p in params]
    numeric = numerical_gradient(lambda: model.loss(x, y), params)
    for (name, _), g in zip(model.named_parameters(), numeric):
        assert torch.allclose(manual[name], g, rtol=1e-5, atol=1e-9), name
    assert all(torch.equal(p, b) for p, b in zip(params, before))


def test_any_number_of_hidden_layers_including_none():
    for hidden in ([], [4], [4, 5, 3, 4]):
        model = make("tanh", "softmax", seed=5, sizes=(3, hidden, 4))
        x, y = batch("softmax", 6, 3, 4, seed=6)
        _, manual = manual_grads(model, x, y)
        _, auto = autograd_grads(model, x, y)
        assert len(manual) == 2 * (len(hidden) + 1)
        for name, g in auto.items():
            assert torch.allclose(manual[name], g, rtol=1e-8, atol=1e-14), (hidden, name)


def test_relu_derivative_is_zero_at_exactly_zero_like_autograd():
    # Zero weights and biases into the hidden layer put every pre-activation at exactly 0.
    model = make("relu", "softmax", seed=7, sizes=(3, [4], 3))
    with torch.no_grad():
        model.layers[0].weight.zero_()
        model.layers[0].bias.zero_()
    x, y = batch("softmax", 5, 3, 3, seed=8)
    _, manual = manual_grads(model, x, y)
    _, auto = autograd_grads(model, x, y)
    for name, g in auto.items():
        assert torch.allclose(manual[name], g, rtol=1e-10, atol=0), name
    # relu'(0) = 0 (not 1): nothing flows back into the first layer.
    assert not manual["layers.0.weight"].any() and not manual["layers.0.bias"].any()
    assert manual["layers.1.bias"].abs().max() > 0.01


# ----------------------------------------------------------------------------- softmax output


def test_softmax_output_error_is_a_minus_y():
    """Eq. 3-64: delta^L = a^L - y, so dJ/db^L = mean_rows(a - onehot), dJ/dW^L = a^T(a - y)/N."""
    model = make("sigmoid", "softmax", seed=9, sizes=(5, [6], 4))
    x, y = batch("softmax", 8, 5, 4, seed=10)
    model.manual_backward(x, y)
    with torch.no_grad():
        hidden = scratch.sigmoid(model.layers[0](x))
        a = torch.softmax(model(x), dim=1)
        delta = (a - F.one_hot(y, 4).double()) / len(x)
    assert torch.allclose(model.layers[1].bias.grad, delta.sum(0), rtol=1e-10, atol=1e-15)
    assert torch.allclose(model.layers[1].weight.grad, hidden.T @ delta, rtol=1e-10, atol=1e-15)
    assert model.layers[1].bias.grad.sum().abs() < 1e-12  # each row of a - y sums to 0


def test_softmax_loss_and_forward_match_torch_cross_entropy():
    model = make("relu", "softmax", seed=11, sizes=(5, [6], 4))
    x, y = batch("softmax", 9, 5, 4, seed=12)
    logits = model(x)
    assert logits.shape == (9, 4)
    expected = F.cross_entropy(logits, y)
    assert model.loss(x, y).item() == pytest.approx(expected.item(), rel=1e-12)
    assert model.manual_backward(x, y).item() == pytest.approx(expected.item(), rel=1e-12)
    assert scratch_cross_entropy(logits, y).item() == pytest.approx(expected.item(), rel=1e-12)
    # [N, 1] labels work too; anything that is not one label per sample is refused.
    assert model.loss(x, y.reshape(-1, 1)).item() == pytest.approx(expected.item(), rel=1e-12)
    with pytest.raises(ValueError):
        model.manual_backward(x, F.one_hot(y, 4))


def test_softmax_backward_is_finite_for_huge_logits():
    model = make("relu", "softmax", seed=13, sizes=(2, [3], 3))
    with torch.no_grad():
        model.layers[1].weight.mul_(1e4)  # logits of order 1e4: exp() would overflow
    x, y = batch("softmax", 4, 2, 3, seed=14)
    assert model(x).abs().max() > 1000
    loss, manual = manual_grads(model, x, y)
    _, auto = autograd_grads(model, x, y)
    assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in manual.values())
    assert loss.item() == pytest.approx(F.cross_entropy(model(x), y).item(), rel=1e-10)
    for name, g in auto.items():
        assert torch.allclose(manual[name], g, rtol=1e-8, atol=1e-12), name


# ----------------------------------------------------------------------------- linear output


def test_linear_output_is_half_mse():
    x, y = batch("linear", 8, 2, 1, seed=15)
    y = y.reshape(-1)  # [N] targets against [N, 1] outputs must not broadcast to [N, N]
    ours = ManualMLP(2, [5], 1, activation="sigmoid", output="linear", init_std=1.0,
                     init_bias=True, generator=gen(16), dtype=torch.float64)
    # init_bias draws every bias from N(0, init_std^2) right after its layer's weights.
    assert all(p.abs().sum() > 0 for p in ours.parameters())
    loss = ours.manual_backward(x, y)
    assert loss.item() == pytest.approx(0.5 * F.mse_loss(ours(x).reshape(-1), y).item(), rel=1e-12)
    grads = [p.grad.clone() for p in ours.parameters()]
    ours.zero_grad()
    ours.loss(x, y).backward()
    for g, p in zip(grads, ours.parameters()):
        assert torch.allclose(g, p.grad, rtol=1e-10, atol=1e-15)


# ----------------------------------------------------------------------------- bookkeeping


def test_gradients_overwrite_instead_of_accumulating():
    model = make("tanh", "softmax", seed=17)
    x, y = batch("softmax", 6, 5, 3, seed=18)
    _, first = manual_grads(model, x, y)
    assert all(g.abs().max() > 0 for g in first.values())
    _, second = manual_grads(model, x, y)  # training loops never zero between calls
    assert all(torch.equal(first[n], second[n]) for n in first)
    with torch.no_grad():
        for p in model.parameters():
            p.grad.fill_(123.0)  # stale gradients from elsewhere must be replaced too
    _, third = manual_grads(model, x, y)
    assert all(torch.equal(first[n], third[n]) for n in first)


def test_manual_backward_builds_no_graph_and_leaves_parameters_alone():
    model = make("leaky_relu", "linear", seed=19)
    x, y = batch("linear", 6, 5, 3, seed=20)
    before = [p.detach().clone() for p in model.parameters()]
    loss = model.manual_backward(x, y)
    assert loss.grad_fn is None and not loss.requires_grad
    assert all(p.grad.grad_fn is None for p in model.parameters())
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))


def test_construction_state_dict_and_validation():
    model = ManualMLP(64, [1024, 1024], 10, generator=gen(21))
    assert list(model.state_dict()) == [
        f"layers.{i}.{n}" for i in range(3) for n in ("weight", "bias")
    ]
    assert [tuple(p.shape) for p in model.parameters()] == [
        (64, 1024), (1024,), (1024, 1024), (1024,), (1024, 10), (10,)
    ]
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(not layer.bias.any() for layer in model.layers)  # biases 0 by default
    w = model.layers[1].weight
    assert w.std().item() == pytest.approx(0.01, rel=0.02) and abs(w.mean().item()) < 1e-4
    assert torch.equal(w, ManualMLP(64, [1024, 1024], 10, generator=gen(21)).layers[1].weight)
    other = ManualMLP(64, [1024, 1024], 10, generator=gen(22)).layers[1].weight
    assert not torch.equal(w, other)
    # weights-only decay by name (scratch.not_bias) must leave the biases out.
    assert [scratch.not_bias(n) for n, _ in model.named_parameters()] == [True, False] * 3
    assert "leaky_relu(0.2)" in repr(make("leaky_relu", "linear", seed=0))

    bad = [
        {"hidden": [4, 0]},
        {"hidden": 4},
        {"hidden": [4.5]},
        {"out_features": 1},  # one-class softmax
        {"activation": "softplus"},
        {"output": "sigmoid"},
        {"init_std": -1.0},
        {"init_std": float("nan")},
        {"negative_slope": float("inf")},
    ]
    for change in bad:
        kw = {"in_features": 3, "hidden": [4], "out_features": 2, **change}
        with pytest.raises(ValueError):
            ManualMLP(kw.pop("in_features"), kw.pop("hidden"), kw.pop("out_features"),
                      generator=gen(), **kw)
    ManualMLP(3, [4], 1, output="linear", generator=gen())  # one linear output is fine


def test_no_global_rng_is_consumed():
    state = torch.random.get_rng_state()
    model = ManualMLP(4, [8, 8], 3, init_bias=True, generator=gen(23))
    x, y = batch("softmax", 5, 4, 3, seed=24)
    model.manual_backward(x.float(), y)
    model.loss(x.float(), y)
    ManualMLP(4, [8], 2, activation="tanh", output="linear", generator=gen(25)).manual_backward(
        x.float(), torch.zeros(5, 2)
    )
    assert torch.equal(torch.random.get_rng_state(), state)


# ----------------------------------------------------------------------------- the book's network


def test_book_architecture_float32_matches_autograd():
    """784-1024-1024-10 of section 3.7, with digits' 64 inputs, ReLU, float32, a batch of 32."""
    x, y = digits(32)
    model = ManualMLP(64, [1024, 1024], 10, init_std=0.05, generator=gen(26))
    loss, manual = manual_grads(model, x, y)
    ref_loss, auto = autograd_grads(model, x, y)
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-5)
    for name, g in auto.items():
        scale = g.abs().max()
        assert scale > 0, name
        assert torch.allclose(manual[name], g, rtol=1e-4, atol=1e-5 * scale.item()), name


def test_sgd_with_manual_backward_learns_digits():
    x, y = digits()
    model = ManualMLP(64, [64], 10, init_std=0.1, generator=gen(27))
    opt = ScratchSGD(model.parameters(), lr=0.5)
    start = model.loss(x, y).item()
    assert start == pytest.approx(torch.log(torch.tensor(10.0)).item(), abs=0.1)
    order = gen(28)
    for _ in range(3):  # epochs of minibatch SGD: the training loop's manual branch
        for idx in torch.randperm(len(x), generator=order).split(64):
            model.manual_backward(x[idx], y[idx])
            opt.step()
    with torch.no_grad():
        end = model.loss(x, y).item()
        accuracy = (model(x).argmax(1) == y).float().mean().item()
        probs = softmax(model(x))
    assert end < 0.5 * start
    assert accuracy > 0.8
    assert torch.allclose(probs.sum(1), torch.ones(len(x)), atol=1e-5)


def test_training_loop_uses_manual_backward():
    from dlbasics.learn.training import train_epoch

    x, y = digits(256)
    model = ManualMLP(64, [32], 10, init_std=0.1, generator=gen(29))
    start = model.loss(x, y).item()

    def no_autograd_loss(out, target):
        raise AssertionError("train_epoch should call manual_backward, not the loss function")

    opt = ScratchSGD(model.parameters(), lr=0.5)
    for _ in range(3):
        train_epoch(model, no_autograd_loss, opt, x, y, batch_size=32, generator=gen(30))
    assert model.loss(x, y).item() < 0.7 * start
