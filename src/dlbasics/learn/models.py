"""What a model is: one registry builds every variant's network from its config.

A new variant is a params entry: the registry maps `model.kind` to a builder, and the
activation, initialisation, widths and dropout all come from the config.
"""

from __future__ import annotations

import io
import math
from typing import Callable, get_args

import torch
from torch import nn

from dlbasics.config.variants import Activation, MODEL_KINDS, ModelSpec, SCRATCH_KINDS
from dlbasics.learn import scratch

# The hidden-layer activation of `model.activation`, as a torch.nn layer.
ACTIVATION_LAYERS: dict[str, Callable[[ModelSpec], nn.Module]] = {
    "relu": lambda s: nn.ReLU(),
    "sigmoid": lambda s: nn.Sigmoid(),
    "tanh": lambda s: nn.Tanh(),
    "leaky_relu": lambda s: nn.LeakyReLU(s.negative_slope),
    "prelu": lambda s: nn.PReLU(),  # one learned slope per layer, starting at 0.25
}


def _linear(spec: ModelSpec, n_in: int, n_out: int) -> nn.Module:
    return nn.Linear(n_in, n_out, bias=spec.bias)


def _mlp(spec: ModelSpec, n_in: int, n_out: int) -> nn.Module:
    layers: list[nn.Module] = []
    width = n_in
    for i, h in enumerate(spec.hidden):
        layers += [nn.Linear(width, h), ACTIVATION_LAYERS[spec.activation](spec)]
        if spec.dropout and spec.dropout[i] > 0:
            layers.append(nn.Dropout(spec.dropout[i]))
        width = h
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


BUILDERS: dict[str, Callable[[ModelSpec, int, int], nn.Module]] = {
    "linear": _linear,
    "mlp": _mlp,
}

# The taught versions draw their own N(0, init_std^2) initialisation from the generator.
SCRATCH_BUILDERS: dict[str, Callable[[ModelSpec, int, int, torch.Generator], nn.Module]] = {
    "linear_scratch": lambda s, i, o, g: scratch.ScratchLinear(i, o, init_std=s.init_std, generator=g),
    "softmax_scratch": lambda s, i, o, g: scratch.ScratchSoftmaxRegression(
        i, o, init_std=s.init_std, generator=g
    ),
    "mlp_scratch": lambda s, i, o, g: scratch.ScratchMLP(
        i, s.hidden, o, activation=s.activation, dropout=s.dropout or None,
        init_std=s.init_std, negative_slope=s.negative_slope, generator=g,
    ),
    # Biases as each book recipe draws them: N(0, init_std^2) for the trapezoid's linear output
    # (3.4), zero for the softmax classifier (3.7).
    "mlp_manual": lambda s, i, o, g: scratch.ManualMLP(
        i, s.hidden, o, activation=s.activation, output=s.output,
        negative_slope=s.negative_slope, init_std=s.init_std, init_bias=s.output == "linear",
        generator=g,
    ),
}


# config.MODEL_KINDS names the kinds params may use; these tables implement them. A kind
# without a builder (or a builder for a kind config does not know) fails on import, not in a
# run: the two cannot drift apart.
if set(BUILDERS) | set(SCRATCH_BUILDERS) != set(MODEL_KINDS) or set(SCRATCH_BUILDERS) != set(
        SCRATCH_KINDS):
    raise ImportError(f"dlbasics.learn.models builds {sorted(BUILDERS)} + {sorted(SCRATCH_BUILDERS)}, "
                      f"config.MODEL_KINDS lists {MODEL_KINDS} (scratch: {SCRATCH_KINDS})")
if set(ACTIVATION_LAYERS) != set(get_args(Activation)):
    raise ImportError(f"dlbasics.learn.models has layers for {sorted(ACTIVATION_LAYERS)}, config's "
                      f"Activation lists {get_args(Activation)}")


@torch.no_grad()
def init_parameters(model: nn.Module, spec: ModelSpec, generator: torch.Generator) -> None:
    """Initialise every nn.Linear from `generator` (no global RNG draws).

    default: PyTorch's own scheme (kaiming-uniform with a = sqrt(5), bias U(+-1/sqrt(fan_in)));
    normal:  W ~ N(0, init_std^2), b = 0 (the sources' choice; same draws as dlbasics.learn.scratch);
    xavier:  W ~ U(+-sqrt(6 / (fan_in + fan_out))), b = 0.
    """
    for m in model.modules():
        if isinstance(m, nn.PReLU):
            m.reset_parameters()  # its slope back to 0.25 (to_empty left it unset); no draw
        if not isinstance(m, nn.Linear):
            continue
        fan_in = m.weight.shape[1]
        if spec.init == "default":
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
            bound = 1.0 / math.sqrt(fan_in)
            if m.bias is not None:
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)
        elif spec.init == "normal":
            # Drawn as [in, out] like the scratch models (y = X W + b), then transposed, so a
            # scratch variant and its torch.nn twin start from the very same weights.
            w = torch.randn(m.in_features, m.out_features, generator=generator) * spec.init_std
            m.weight.copy_(w.T)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        else:
            nn.init.xavier_uniform_(m.weight, generator=generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def build_model(spec: ModelSpec, n_in: int, n_out: int, generator: torch.Generator) -> nn.Module:
    """A freshly initialised model for `spec` with `n_in` inputs and `n_out` outputs."""
    if spec.kind in SCRATCH_BUILDERS:
        return SCRATCH_BUILDERS[spec.kind](spec, n_in, n_out, generator)
    # Built on the meta device so construction draws nothing; then initialised from `generator`.
    with torch.device("meta"):
        model = BUILDERS[spec.kind](spec, n_in, n_out)
    model = model.to_empty(device="cpu")
    init_parameters(model, spec, generator)
    return model


def state_dict_bytes(model: nn.Module) -> bytes:
    """The model's state_dict serialised by torch.save, byte-identical for identical weights."""
    buf = io.BytesIO()  # a fixed in-archive name: saving to a temp *path* would embed that name
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    return buf.getvalue()


def linear_weights(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """(w [in], b or None) of a one-output linear model (torch or scratch), else None."""
    if isinstance(model, nn.Linear) and model.out_features == 1:
        return model.weight.detach()[0], None if model.bias is None else model.bias.detach()[0]
    if isinstance(model, scratch.ScratchLinear) and model.weight.shape[1] == 1:
        return model.weight.detach()[:, 0], model.bias.detach()[0]
    return None


def load_state_dict(model: nn.Module, path: str) -> nn.Module:
    """Load weights saved by `state_dict_bytes` (weights_only: no pickled code runs)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model
