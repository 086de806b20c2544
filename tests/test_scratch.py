"""Checks of the from-scratch variants in dlbasics.learn.scratch against torch.nn / torch.optim."""

from __future__ import annotations

import ast
import inspect
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlbasics.learn import scratch
from dlbasics.learn.scratch import (
    InvertedDropout,
    ManualMLP,
    ScratchLinear,
    ScratchMLP,
    ScratchSGD,
    ScratchSoftmaxRegression,
    l1_penalty,
    l2_penalty,
    leaky_relu,
    not_bias,
    numerical_gradient,
    relu,
    scratch_cross_entropy,
    sigmoid,
    softmax,
    squared_loss,
    stable_log_softmax,
    tanh,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def synthetic_linear(n: int = 1000, seed: int = 0):
    """d2l's set: y = X w + b + N(0, 0.01^2), X ~ N(0, 1), w = [2, -3.4], b = 4.2."""
    g = gen(seed)
    true_w, true_b = torch.tensor([2.0, -3.4]), 4.2
    x = torch.randn(n, 2, generator=g)
    y = x @ true_w + true_b + 0.01 * torch.randn(n, generator=g)
    return x, y.reshape(-1, 1), true_w, true_b


def batches(n: int, batch_size: int, g: torch.Generator):
    perm = torch.randperm(n, generator=g)
    return [perm[i : i + batch_size] for i in range(0, n, batch_size)]


# ----------------------------------------------------------------------------- linear regression


def test_linear_regression_recovers_true_parameters_and_least_squares():
    x, y, true_w, true_b = synthetic_linear()
    model = ScratchLinear(2, 1, generator=gen(1))
    opt = ScratchSGD(model.parameters(), lr=0.03)
    shuffle = gen(2)
    initial = squared_loss(model(x), y).item()
    for _ in range(3):
        for idx in batches(len(x), 10, shuffle):
            loss = squared_loss(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    w, b = model.weight.detach().reshape(-1), model.bias.detach().item()
    assert torch.allclose(w, true_w, atol=0.01)
    assert abs(b - true_b) < 0.01
    assert squared_loss(model(x), y).item() < 1e-3 * initial

    design = torch.cat([x, torch.ones(len(x), 1)], dim=1).double()
    solution = torch.linalg.lstsq(design, y.double()).solution.reshape(-1).float()
    assert torch.allclose(torch.cat([w, torch.tensor([b])]), solution, atol=1e-2)


def test_squared_loss_is_half_of_mse_and_reshapes_targets():
    y_hat = torch.tensor([[1.0], [2.0], [4.0]])
    y = torch.tensor([0.0, 2.0, 1.0])  # [N] against [N, 1]: must not broadcast to [N, N]
    assert squared_loss(y_hat, y).item() == pytest.approx((1 + 0 + 9) / 2 / 3)
    half_mse = 0.5 * nn.MSELoss()(y_hat, y.reshape(-1, 1)).item()
    assert squared_loss(y_hat, y).item() == pytest.approx(half_mse)


def test_scratch_sgd_matches_torch_sgd_step_by_step():
    x, y, _, _ = synthetic_linear(200)
    ours = ScratchLinear(2, 1, generator=gen(3))
    ref = nn.Linear(2, 1)
    with torch.no_grad():
        ref.weight.copy_(ours.weight.T)
        ref.bias.copy_(ours.bias)
    opt = ScratchSGD(ours.parameters(), lr=0.03)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.03)
    mse = nn.MSELoss()
    for idx in batches(len(x), 10, gen(4))[:8]:
        opt.zero_grad()
        squared_loss(ours(x[idx]), y[idx]).backward()
        opt.step()
        ref_opt.zero_grad()
        (0.5 * mse(ref(x[idx]), y[idx])).backward()
        ref_opt.step()
        assert torch.allclose(ours.weight.T, ref.weight, atol=1e-6)
        assert torch.allclose(ours.bias, ref.bias, atol=1e-6)
    assert not torch.allclose(ours.weight, torch.zeros_like(ours.weight), atol=0.1)  # it did move


def test_zero_grad_clears_gradients():
    model = ScratchLinear(3, 2, generator=gen())
    opt = ScratchSGD(model.parameters(), lr=0.1)
    model(torch.ones(4, 3)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    opt.zero_grad()
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())


# ----------------------------------------------------------------------------- weight decay


def _decay_problem():
    # d2l 4.5's over-parameterised setting, scaled down: few samples, many inputs.
    g = gen(5)
    x = torch.randn(20, 30, generator=g)
    y = x @ (0.01 * torch.ones(30, 1)) + 0.05 + 0.01 * torch.randn(20, 1, generator=g)
    return x, y


@pytest.mark.parametrize("how", ["filter", "groups"])
def test_weight_decay_on_weights_only_matches_torch_param_groups(how):
    x, y = _decay_problem()
    lam, lr = 3.0, 0.01
    ours = ScratchLinear(30, 1, generator=gen(6))
    with torch.no_grad():
        ours.bias.fill_(0.5)  # a non-zero bias makes "bias not decayed" observable
    ref = nn.Linear(30, 1)
    with torch.no_grad():
        ref.weight.copy_(ours.weight.T)
        ref.bias.copy_(ours.bias)
    if how == "filter":
        opt = ScratchSGD(ours.named_parameters(), lr=lr, weight_decay=lam, decay_filter=not_bias)
    else:
        opt = ScratchSGD(
            [
                {"params": [ours.weight], "weight_decay": lam},
                {"params": [ours.bias], "weight_decay": 0.0},
            ],
            lr=lr,
        )
    ref_opt = torch.optim.SGD(
        [
            {"params": [ref.weight], "weight_decay": lam},
            {"params": [ref.bias], "weight_decay": 0.0},
        ],
        lr=lr,
    )
    for _ in range(10):
        opt.zero_grad()
        squared_loss(ours(x), y).backward()
        opt.step()
        ref_opt.zero_grad()
        (0.5 * nn.MSELoss()(ref(x), y)).backward()
        ref_opt.step()
    assert torch.allclose(ours.weight.T, ref.weight, atol=1e-6)
    assert torch.allclose(ours.bias, ref.bias, atol=1e-6)

    # Decaying the bias too would give a different bias: the filter really excluded it.
    everything = ScratchLinear(30, 1, generator=gen(6))
    with torch.no_grad():
        everything.bias.fill_(0.5)
    opt_all = ScratchSGD(everything.parameters(), lr=lr, weight_decay=lam)
    for _ in range(10):
        opt_all.zero_grad()
        squared_loss(everything(x), y).backward()
        opt_all.step()
    assert (everything.bias - ours.bias).abs().item() > 1e-3


def test_weight_decay_equals_l2_penalty_in_the_loss():
    x, y = _decay_problem()
    lam, lr = 3.0, 0.01
    a = ScratchLinear(30, 1, generator=gen(7))
    b = ScratchLinear(30, 1, generator=gen(7))
    opt_a = ScratchSGD(a.named_parameters(), lr=lr, weight_decay=lam, decay_filter=not_bias)
    opt_b = ScratchSGD(b.parameters(), lr=lr)
    for _ in range(10):
        opt_a.zero_grad()
        squared_loss(a(x), y).backward()
        opt_a.step()
        opt_b.zero_grad()
        (squared_loss(b(x), y) + lam * l2_penalty(b.weight)).backward()
        opt_b.step()
    assert torch.allclose(a.weight, b.weight, atol=1e-6)
    assert torch.allclose(a.bias, b.bias, atol=1e-6)


def test_penalties_values():
    w1, w2 = torch.tensor([1.0, -2.0]), torch.tensor([[3.0]])
    assert l2_penalty(w1).item() == pytest.approx(2.5)
    assert l2_penalty([w1, w2]).item() == pytest.approx(7.0)
    assert l1_penalty(w1).item() == pytest.approx(3.0)
    assert l1_penalty([w1, w2]).item() == pytest.approx(6.0)


def test_sgd_rejects_filter_without_names():
    model = ScratchLinear(2, 1, generator=gen())
    with pytest.raises(ValueError):
        ScratchSGD(model.parameters(), lr=0.1, weight_decay=1.0, decay_filter=not_bias)


# ----------------------------------------------------------------------------- softmax regression


def test_stable_log_softmax_matches_torch_including_extreme_logits():
    z = torch.tensor(
        [[1.0, 2.0, 3.0], [1000.0, 0.0, -1000.0], [-1000.0, -1000.0, -999.0], [0.5, 0.5, 0.5]]
    )
    ours, ref = stable_log_softmax(z), torch.log_softmax(z, dim=-1)
    assert torch.isfinite(ours).all()
    assert torch.allclose(ours, ref, atol=1e-6)
    assert torch.allclose(softmax(z), torch.softmax(z, dim=-1), atol=1e-7)
    assert torch.allclose(softmax(z).sum(dim=-1), torch.ones(4))


def test_cross_entropy_matches_torch_and_is_finite_for_large_logits():
    g = gen(8)
    logits = torch.randn(16, 5, generator=g) * 3
    labels = torch.randint(0, 5, (16,), generator=g)
    ours = scratch_cross_entropy(logits, labels)
    assert torch.allclose(ours, F.cross_entropy(logits, labels), atol=1e-6)

    big = torch.tensor([[1000.0, 0.0, -1000.0], [1000.0, 1000.0, 0.0]], requires_grad=True)
    lab = torch.tensor([2, 0])
    loss = scratch_cross_entropy(big, lab)
    loss.backward()
    ref_big = big.detach().clone().requires_grad_(True)
    ref_loss = F.cross_entropy(ref_big, lab)
    ref_loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(big.grad).all()
    assert loss.item() == pytest.approx(ref_loss.item())
    assert torch.allclose(big.grad, ref_big.grad, atol=1e-6)


def test_softmax_regression_training_matches_nn_linear_cross_entropy_sgd():
    g = gen(9)
    x = torch.randn(120, 1, 2, 3, generator=g)  # image-like input, flattened to 6 features
    labels = torch.randint(0, 4, (120,), generator=g)
    ours = ScratchSoftmaxRegression(6, 4, generator=gen(10))
    ref = nn.Sequential(nn.Flatten(), nn.Linear(6, 4))
    with torch.no_grad():
        ref[1].weight.copy_(ours.linear.weight.T)
        ref[1].bias.copy_(ours.linear.bias)
    opt, ref_opt = ScratchSGD(ours.parameters(), lr=0.1), torch.optim.SGD(ref.parameters(), lr=0.1)
    ce = nn.CrossEntropyLoss()
    for idx in batches(120, 20, gen(11)):
        opt.zero_grad()
        scratch_cross_entropy(ours(x[idx]), labels[idx]).backward()
        opt.step()
        ref_opt.zero_grad()
        ce(ref(x[idx]), labels[idx]).backward()
        ref_opt.step()
    assert ours(x).shape == (120, 4)
    assert torch.allclose(ours.linear.weight.T, ref[1].weight, atol=1e-5)
    assert torch.allclose(ours.linear.bias, ref[1].bias, atol=1e-5)
    assert torch.allclose(ours(x), ref(x), atol=1e-5)


# ----------------------------------------------------------------------------- activations and MLP


def test_activations_match_torch_values_and_gradients():
    x = torch.cat([torch.linspace(-30, 30, 601), torch.tensor([0.0, -1000.0, 1000.0])])
    for ours, ref in [
        (relu, torch.relu),
        (sigmoid, torch.sigmoid),
        (tanh, torch.tanh),
        (leaky_relu, lambda t: F.leaky_relu(t, 0.01)),
        (lambda t: leaky_relu(t, 0.2), lambda t: F.leaky_relu(t, 0.2)),
    ]:
        a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        ya, yb = ours(a), ref(b)
        assert torch.allclose(ya, yb, atol=1e-6), ours
        ya.sum().backward()
        yb.sum().backward()
        assert torch.isfinite(a.grad).all()
        assert torch.allclose(a.grad, b.grad, atol=1e-6), ours


_TORCH_ACT = {
    "relu": nn.ReLU(),
    "sigmoid": nn.Sigmoid(),
    "tanh": nn.Tanh(),
    "leaky_relu": nn.LeakyReLU(0.01),
}


def _copy_to_sequential(model: ScratchMLP, act: nn.Module) -> nn.Sequential:
    mods: list[nn.Module] = [nn.Flatten()]
    for i, layer in enumerate(model.layers):
        lin = nn.Linear(layer.in_features, layer.out_features)
        with torch.no_grad():
            lin.weight.copy_(layer.weight.T)
            lin.bias.copy_(layer.bias)
        mods.append(lin)
        if i < len(model.layers) - 1:
            mods.append(act)
    return nn.Sequential(*mods)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "leaky_relu"])
def test_mlp_forward_matches_sequential(activation):
    model = ScratchMLP(12, [16, 8], 3, activation=activation, init_std=0.5, generator=gen(12))
    ref = _copy_to_sequential(model, _TORCH_ACT[activation])
    x = torch.randn(10, 3, 4, generator=gen(13))
    assert model(x).shape == (10, 3)
    assert torch.allclose(model(x), ref(x), atol=1e-5)
    assert len(list(model.parameters())) == 6
    expected_keys = {f"layers.{i}.{n}" for i in range(3) for n in ("weight", "bias")}
    assert set(model.state_dict()) == expected_keys


def test_mlp_dropout_active_only_in_training():
    model = ScratchMLP(12, [64, 64], 3, dropout=[0.2, 0.5], init_std=0.5, generator=gen(14))
    ref = _copy_to_sequential(model, nn.ReLU())
    x = torch.randn(10, 12, generator=gen(15))
    model.eval()
    assert torch.allclose(model(x), ref(x), atol=1e-5)
    model.train()
    assert not torch.allclose(model(x), ref(x), atol=1e-3)
    with pytest.raises(ValueError):
        ScratchMLP(12, [8, 8], 3, dropout=[0.5], generator=gen())
    with pytest.raises(ValueError):
        ScratchMLP(12, [8], 3, activation="softplus", generator=gen())


# ----------------------------------------------------------------------------- dropout


def test_inverted_dropout_preserves_expectation_and_drop_rate():
    n, x_val = 200_000, 1.5
    for p in (0.2, 0.5, 0.8):
        drop = InvertedDropout(p, generator=gen(16))
        out = drop(torch.full((n,), x_val))
        kept = out != 0
        # Each output is x/(1-p) w.p. 1-p, else 0: mean x, variance x^2 p/(1-p).
        mean_se = x_val * math.sqrt(p / (1 - p) / n)
        assert abs(out.mean().item() - x_val) < 5 * mean_se
        assert abs((~kept).float().mean().item() - p) < 5 * math.sqrt(p * (1 - p) / n)
        assert torch.allclose(out[kept], torch.full_like(out[kept], x_val / (1 - p)))
        assert out.var().item() == pytest.approx(x_val**2 * p / (1 - p), rel=0.05)


def test_inverted_dropout_modes_and_edge_cases():
    x = torch.randn(50, 7, generator=gen(17))
    drop = InvertedDropout(0.5, generator=gen(18))
    drop.eval()
    assert drop(x) is x
    assert InvertedDropout(0.0, generator=gen()).train()(x) is x
    zeros = InvertedDropout(1.0, generator=gen()).train()(x)
    assert torch.equal(zeros, torch.zeros_like(x)) and not torch.isnan(zeros).any()
    for bad in (-0.1, 1.1, float("nan")):
        with pytest.raises(ValueError):
            InvertedDropout(bad, generator=gen())


def test_inverted_dropout_is_reproducible_from_the_generator():
    x = torch.ones(100, 10)
    a = InvertedDropout(0.5, generator=gen(19))(x)
    b = InvertedDropout(0.5, generator=gen(19))(x)
    c = InvertedDropout(0.5, generator=gen(20))(x)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_inverted_dropout_statistically_like_nn_dropout():
    n, p = 200_000, 0.3
    x = torch.full((n,), 2.0)
    ours = InvertedDropout(p, generator=gen(21))(x)
    with torch.random.fork_rng():  # nn.Dropout only uses the global RNG; keep it untouched outside
        torch.manual_seed(21)
        ref = nn.Dropout(p).train()(x)
    assert set(ours.unique().tolist()) == set(ref.unique().tolist())  # same values: 0 and x/(1-p)
    se_mean = 2.0 * math.sqrt(p / (1 - p) / n)
    assert abs(ours.mean().item() - ref.mean().item()) < 5 * math.sqrt(2) * se_mean
    assert ours.var().item() == pytest.approx(ref.var().item(), rel=0.05)


# ----------------------------------------------------------------------------- hand backprop


def trapezoid_data(n: int, g: torch.Generator, dtype=torch.float64):
    """File 004's trapezoids: top = height x1, bottom x2 ~ U(0.5, 1.5); area 0.5 (x1 + x2) x1."""
    x = 0.5 + torch.rand(n, 2, generator=g, dtype=dtype)
    y = 0.5 * (x[:, :1] + x[:, 1:]) * x[:, :1]
    return x, y


def book_net(n_in: int, hidden: int, n_out: int, **kw) -> ManualMLP:
    """The book's trapezoid net (3.4): one sigmoid layer, a linear output, half squared loss,
    every weight and bias from N(0, 1)."""
    return ManualMLP(n_in, [hidden], n_out, activation="sigmoid", output="linear", init_std=1.0,
                     init_bias=True, **kw)


def test_manual_backward_matches_autograd_and_numerical_gradient():
    x, y = trapezoid_data(8, gen(22))
    model = book_net(2, 5, 1, generator=gen(23), dtype=torch.float64)
    loss = model.manual_backward(x, y)
    manual = {n: p.grad.clone() for n, p in model.named_parameters()}
    assert all(p.grad is not None for p in model.parameters())

    ref = book_net(2, 5, 1, generator=gen(23), dtype=torch.float64)
    ref_loss = ref.loss(x, y)
    ref_loss.backward()
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-12)
    # Book loss: half the mean squared error.
    assert loss.item() == pytest.approx(0.5 * ((model(x) - y) ** 2).mean().item(), rel=1e-12)
    for name, p in ref.named_parameters():
        assert torch.allclose(manual[name], p.grad, rtol=1e-8, atol=1e-12), name

    params = list(model.parameters())
    before = [p.detach().clone() for p in params]
    numeric = numerical_gradient(lambda: model.loss(x, y), params)
    for (name, _), g in zip(model.named_parameters(), numeric):
        assert torch.allclose(manual[name], g, rtol=1e-5, atol=1e-9), name
    assert all(torch.equal(p, b) for p, b in zip(params, before))  # every element restored


def test_manual_backward_overwrites_grads_and_handles_multiple_outputs():
    g = gen(24)
    x = torch.randn(6, 3, generator=g, dtype=torch.float64)
    y = torch.randn(6, 2, generator=g, dtype=torch.float64)
    model = book_net(3, 4, 2, generator=gen(25), dtype=torch.float64)
    model.manual_backward(x, y)
    first = [p.grad.clone() for p in model.parameters()]
    model.manual_backward(x, y)  # no accumulation: the training loop never zeroes between calls
    assert all(torch.equal(p.grad, f) for p, f in zip(model.parameters(), first))
    model.zero_grad()
    model.loss(x, y).backward()
    assert all(torch.allclose(p.grad, f, rtol=1e-8) for p, f in zip(model.parameters(), first))


def test_only_the_manual_mlp_advertises_manual_backward():
    g = gen()
    assert getattr(book_net(2, 3, 1, generator=g), "manual_backward", False)
    for model in (
        ScratchLinear(2, 1, generator=g),
        ScratchSoftmaxRegression(2, 3, generator=g),
        ScratchMLP(2, [3], 1, dropout=[0.5], generator=g),
        InvertedDropout(0.5, generator=g),
    ):
        assert not getattr(model, "manual_backward", False), type(model)


def test_trapezoid_training_with_gradient_descent_lowers_the_loss():
    x, y = trapezoid_data(50, gen(26))
    model = book_net(2, 80, 1, generator=gen(27), dtype=torch.float64)
    opt = ScratchSGD(model.parameters(), lr=0.05)
    losses = []
    for _ in range(600):  # full-batch gradient descent, the training loop's manual branch
        if getattr(model, "manual_backward", False):
            losses.append(model.manual_backward(x, y).item())
        opt.step()
    assert losses[-1] < 0.05 * losses[0]
    assert losses[-1] < 5e-3
    rmse = ((model(x) - y) ** 2).mean().sqrt().item()
    assert rmse < 0.1  # areas lie in about [0.25, 2.25]


# ----------------------------------------------------------------------------- numerical gradient


def test_numerical_gradient_of_sum_of_squares_matches_file_003():
    x = torch.tensor([3.0, 4.0], dtype=torch.float64)
    (g,) = numerical_gradient(lambda: (x**2).sum(), [x])
    assert torch.allclose(g, torch.tensor([6.0, 8.0], dtype=torch.float64), atol=1e-6)
    assert torch.equal(x, torch.tensor([3.0, 4.0], dtype=torch.float64))

    w = torch.randn(3, 2, generator=gen(28), dtype=torch.float64)
    b = torch.randn(2, generator=gen(29), dtype=torch.float64)
    gw, gb = numerical_gradient(lambda: (w**3).sum() + (b * w).sum(), [w, b])
    assert torch.allclose(gw, 3 * w**2 + b, atol=1e-6)
    assert torch.allclose(gb, w.sum(dim=0), atol=1e-6)


# ----------------------------------------------------------------------------- house rules


def test_scratch_module_avoids_torch_shortcuts():
    tree = ast.parse(inspect.getsource(scratch))
    banned_attrs = {
        "Linear", "functional", "MSELoss", "CrossEntropyLoss", "Dropout", "optim", "manual_seed"
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            assert node.attr not in banned_attrs, node.attr
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            assert not any("functional" in n or "optim" in n for n in names), names


def test_no_global_rng_is_consumed():
    state = torch.random.get_rng_state()
    g = gen(30)
    model = ScratchMLP(4, [8], 2, dropout=[0.5], generator=g).train()
    model(torch.ones(3, 4))
    manual = book_net(2, 3, 1, generator=g)
    manual.manual_backward(torch.ones(2, 2), torch.ones(2))
    ScratchSoftmaxRegression(4, 3, generator=g)
    assert torch.equal(torch.random.get_rng_state(), state)


# --------------------------------------------------------------------------- edges (make mutate)


def test_softmax_along_any_dimension_equals_torch():
    from dlbasics.learn.scratch import softmax

    z = torch.randn(4, 3, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for dim in (0, 1, 2, -1):
        torch.testing.assert_close(softmax(z, dim=dim), torch.softmax(z, dim=dim))


def test_penalties_of_one_scalar_tensor():
    from dlbasics.learn.scratch import l1_penalty, l2_penalty

    w = torch.tensor(-3.0, dtype=torch.float64)
    assert float(l2_penalty(w)) == 4.5 and float(l1_penalty(w)) == 3.0
    assert float(l2_penalty([w, torch.tensor([1.0, 2.0], dtype=torch.float64)])) == 7.0


def test_cross_entropy_from_probs_refuses_other_shapes_in_one_line():
    from dlbasics.learn.scratch import cross_entropy_from_probs

    p = torch.full((2, 2, 2), 0.5)
    with pytest.raises(ValueError) as info:
        cross_entropy_from_probs(p, p)
    assert str(info.value) == "p must have shape [C] or [N, C], got (2, 2, 2)"
