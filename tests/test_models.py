"""Tests for dlbasics.learn.models: the registry builds what the config says, initialises from the
generator it is given (never the global one), and weights serialise byte-identically.

Oracles: torch.nn's own layers and init bounds, the moments of the init distributions, and
torch.save / torch.load round trips.
"""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from dlbasics.config.variants import ModelSpec
from dlbasics.learn.models import build_model, load_state_dict, state_dict_bytes


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


MLP = ModelSpec(kind="mlp", hidden=[16, 8], activation="tanh", dropout=[0.25, 0.0])


@pytest.mark.parametrize(
    "spec",
    [ModelSpec(kind="linear", init=i) for i in ("default", "normal", "xavier")] + [MLP],
    ids=["linear-default", "linear-normal", "linear-xavier", "mlp"],
)
def test_build_is_deterministic_and_leaves_global_rng_alone(spec):
    state = torch.get_rng_state()
    a = build_model(spec, 12, 5, _gen(1))
    b = build_model(spec, 12, 5, _gen(1))
    c = build_model(spec, 12, 5, _gen(2))
    assert torch.equal(torch.get_rng_state(), state)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys() == sc.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if k.endswith("weight"))
    # Real CPU tensors, not meta placeholders.
    assert all(t.device.type == "cpu" and torch.isfinite(t).all() for t in sa.values())


def test_build_does_not_depend_on_the_global_seed():
    with torch.random.fork_rng():  # leave the global state as other tests found it
        torch.manual_seed(0)
        a = build_model(MLP, 10, 3, _gen(7))
        torch.manual_seed(12345)
        b = build_model(MLP, 10, 3, _gen(7))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_normal_init_moments_and_zero_bias():
    spec = ModelSpec(kind="linear", init="normal", init_std=0.05)
    lin = build_model(spec, 200, 100, _gen())
    w = lin.weight  # 20,000 draws
    # sd of the sample sd of n normals is sigma / sqrt(2n): 5% is ~10 standard errors.
    assert w.std().item() == pytest.approx(0.05, rel=0.05)
    assert abs(w.mean().item()) < 4 * 0.05 / math.sqrt(w.numel())
    assert torch.count_nonzero(lin.bias) == 0


def test_xavier_init_bounds_and_spread():
    spec = ModelSpec(kind="linear", init="xavier")
    fan_in, fan_out = 120, 80
    lin = build_model(spec, fan_in, fan_out, _gen())
    bound = math.sqrt(6 / (fan_in + fan_out))
    assert lin.weight.abs().max().item() <= bound
    assert lin.weight.abs().max().item() > 0.95 * bound  # uses the whole interval
    assert lin.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    assert torch.count_nonzero(lin.bias) == 0


def test_default_init_matches_nn_linear_distribution():
    fan_in, fan_out = 64, 300
    ours = build_model(ModelSpec(kind="linear", init="default"), fan_in, fan_out, _gen())
    with torch.random.fork_rng():
        torch.manual_seed(0)
        ref = nn.Linear(fan_in, fan_out)  # torch's own reset_parameters
    bound = 1 / math.sqrt(fan_in)
    for name in ("weight", "bias"):
        mine, theirs = getattr(ours, name), getattr(ref, name)
        assert mine.abs().max().item() <= bound
        assert theirs.abs().max().item() <= bound
        assert mine.abs().max().item() > 0.9 * bound
    # Both are U(+-bound): same spread, to sampling error.
    assert ours.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    assert ours.weight.std().item() == pytest.approx(ref.weight.std().item(), rel=0.07)


def test_linear_is_one_nn_linear():
    model = build_model(ModelSpec(kind="linear"), 7, 3, _gen())
    assert isinstance(model, nn.Linear)
    assert model.in_features == 7 and model.out_features == 3
    assert model(torch.zeros(4, 7)).shape == (4, 3)


@pytest.mark.parametrize(
    "activation, cls",
    [("relu", nn.ReLU), ("sigmoid", nn.Sigmoid), ("tanh", nn.Tanh), ("leaky_relu", nn.LeakyReLU)],
)
def test_mlp_layers_follow_the_config(activation, cls):
    spec = ModelSpec(kind="mlp", hidden=[32, 16, 8], activation=activation, dropout=[0.5, 0.0, 0.1])
    model = build_model(spec, 20, 4, _gen())
    lins = _linears(model)
    assert [(m.in_features, m.out_features) for m in lins] == [(20, 32), (32, 16), (16, 8), (8, 4)]
    acts = [m for m in model.modules() if isinstance(m, cls)]
    assert len(acts) == 3
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert [d.p for d in drops] == [0.5, 0.1]  # a zero probability adds no layer
    # Order: Linear, activation, [Dropout], ..., Linear (no activation on the output).
    kinds = [type(m) for m in model.children()]
    L, D = nn.Linear, nn.Dropout
    assert kinds == [L, cls, D, L, cls, L, cls, D, L]
    assert model(torch.zeros(5, 20)).shape == (5, 4)


def test_mlp_forward_matches_a_hand_composition():
    spec = ModelSpec(kind="mlp", hidden=[6], activation="sigmoid", init="xavier")
    model = build_model(spec, 4, 3, _gen(3))
    first, last = _linears(model)
    x = torch.randn(10, 4, generator=_gen(4))
    expected = torch.sigmoid(x @ first.weight.T + first.bias) @ last.weight.T + last.bias
    torch.testing.assert_close(model(x), expected)


def test_state_dict_bytes_identical_for_identical_weights():
    a = build_model(MLP, 9, 4, _gen(5))
    b = build_model(MLP, 9, 4, _gen(5))
    c = build_model(MLP, 9, 4, _gen(6))
    assert state_dict_bytes(a) == state_dict_bytes(b)
    assert state_dict_bytes(a) != state_dict_bytes(c)
    # The bytes are a's weights: read back by torch (the oracle), they are exactly its state_dict.
    loaded = torch.load(io.BytesIO(state_dict_bytes(a)), weights_only=True)
    assert list(loaded) == list(a.state_dict())
    assert all(torch.equal(loaded[k], v) for k, v in a.state_dict().items())
    # Identical weights reached another way (copied into a model built from another seed)
    # serialise to the same bytes: the bytes depend on the weights, not on the model's history.
    d = build_model(MLP, 9, 4, _gen(6))
    d.load_state_dict(a.state_dict())
    assert state_dict_bytes(d) == state_dict_bytes(a)


def test_load_state_dict_round_trips(tmp_path):
    src = build_model(MLP, 9, 4, _gen(5))
    path = tmp_path / "model.pt"
    path.write_bytes(state_dict_bytes(src))
    dst = build_model(MLP, 9, 4, _gen(99))
    load_state_dict(dst, str(path))
    for (k, v), (k2, v2) in zip(src.state_dict().items(), dst.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    src.eval(), dst.eval()
    x = torch.randn(3, 9, generator=_gen(1))
    assert torch.equal(src(x), dst(x))
    assert state_dict_bytes(dst) == state_dict_bytes(src)


def test_load_state_dict_refuses_pickled_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    path = tmp_path / "evil.pt"
    torch.save({"weight": Payload()}, path)
    with pytest.raises(Exception, match="[Ww]eights only"):
        load_state_dict(build_model(ModelSpec(kind="linear"), 2, 1, _gen()), str(path))
