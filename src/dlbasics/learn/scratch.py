"""From-scratch ("taught") models, losses and optimiser, each checked against torch.nn.

``nn.Module`` is used only as a parameter container (so ``state_dict``, ``train()``/``eval()``
and ``.parameters()`` work); every forward pass, loss, gradient step and random draw is
written out by hand. No ``nn.Linear``, ``torch.nn.functional``, torch loss classes or
``torch.optim`` here, and no global RNG: each random draw takes an explicit ``torch.Generator``.

Weight layout differs from ``nn.Linear``: here ``weight`` is ``[in, out]`` (y = X W + b, as
in the textbooks), so copying into ``nn.Linear`` needs ``weight.T``.
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "ACTIVATION_FUNCTIONS",
    "InvertedDropout",
    "ManualMLP",
    "ScratchLinear",
    "ScratchMLP",
    "ScratchSGD",
    "ScratchSoftmaxRegression",
    "l1_penalty",
    "l2_penalty",
    "leaky_relu",
    "cross_entropy_from_probs",
    "half_sum_squared_error",
    "multilabel_sigmoid_loss",
    "multilabel_softmax_cross_entropy",
    "not_bias",
    "numerical_gradient",
    "relu",
    "scratch_cross_entropy",
    "sigmoid",
    "softmax",
    "squared_loss",
    "stable_log_softmax",
    "tanh",
]


def _normal(
    shape: tuple[int, ...], std: float, generator: torch.Generator, dtype: torch.dtype
) -> Tensor:
    """Draw N(0, std^2) of ``shape`` from ``generator`` (on the generator's device)."""
    return torch.randn(shape, generator=generator, dtype=dtype, device=generator.device) * std


# ----------------------------------------------------------------------------- linear regression


class ScratchLinear(nn.Module):
    """Affine y = X W + b: X [N, in] -> [N, out]; W [in, out] ~ N(0, init_std^2), b [out] = 0."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        init_std: float = 0.01,
        generator: torch.Generator,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(f"feature sizes must be positive, got {in_features}, {out_features}")
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(_normal((in_features, out_features), init_std, generator, dtype))
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype, device=generator.device))

    def forward(self, x: Tensor) -> Tensor:
        """X [N, in] -> X W + b [N, out]."""
        return x @ self.weight + self.bias


def squared_loss(y_hat: Tensor, y: Tensor) -> Tensor:
    """Mean over elements of (y_hat - y)^2 / 2 -> scalar; ``nn.MSELoss()`` equals 2x this.

    The explicit 1/2 (d2l's definition) cancels the 2 of the derivative. ``y`` is reshaped to
    ``y_hat``'s shape so that [N] vs [N, 1] cannot broadcast silently to [N, N].
    """
    y = y.reshape(y_hat.shape)
    return ((y_hat - y) ** 2 / 2).mean()


# ----------------------------------------------------------------------------- optimiser


def not_bias(name: str) -> bool:
    """``decay_filter`` for 'weights only': False for parameters whose name ends in 'bias'."""
    return not name.split(".")[-1].startswith("bias")


class ScratchSGD:
    """Minibatch SGD: p <- p - lr * (p.grad + wd * p); wd = weight_decay if decayed, else 0.

    ``params`` is one of: an iterable of tensors (all decayed); an iterable of ``(name, tensor)``
    pairs such as ``model.named_parameters()`` with ``decay_filter(name) -> bool`` choosing the
    decayed ones (e.g. :func:`not_bias` for weights only); or an iterable of dicts
    ``{"params": [...], "weight_decay": float}`` (groups without the key use ``weight_decay``).
    The loss is already a batch mean, so unlike d2l's ``sgd`` there is no division by batch size.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float,
        weight_decay: float = 0.0,
        decay_filter: Callable[[str], bool] | None = None,
    ) -> None:
        if lr < 0 or weight_decay < 0:
            raise ValueError(f"lr and weight_decay must be >= 0, got {lr}, {weight_decay}")
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        # Flatten everything into (tensor, decay coefficient) so step() has one code path.
        self.entries: list[tuple[Tensor, float]] = []
        items = list(params)
        if not items:
            raise ValueError("ScratchSGD got an empty parameter list")
        for item in items:
            if isinstance(item, dict):
                wd = float(item.get("weight_decay", self.weight_decay))
                self.entries += [(p, wd) for p in item["params"]]
            elif isinstance(item, tuple):
                name, p = item
                decayed = decay_filter is None or decay_filter(name)
                self.entries.append((p, self.weight_decay if decayed else 0.0))
            else:
                if decay_filter is not None:
                    raise ValueError(
                        "decay_filter needs (name, param) pairs, e.g. model.named_parameters()"
                    )
                self.entries.append((item, self.weight_decay))

    @property
    def params(self) -> list[Tensor]:
        """All managed parameters, in order."""
        return [p for p, _ in self.entries]

    @torch.no_grad()
    def step(self) -> None:
        """Apply one update in place to every parameter that has a gradient."""
        for p, wd in self.entries:
            if p.grad is None:
                continue
            update = p.grad if wd == 0.0 else p.grad + wd * p
            p.sub_(self.lr * update)

    def zero_grad(self) -> None:
        """Drop the gradients (set to None) so the next backward starts from nothing."""
        for p, _ in self.entries:
            p.grad = None


def _as_list(weights: Tensor | Iterable[Tensor]) -> list[Tensor]:
    return [weights] if isinstance(weights, Tensor) else list(weights)


def l2_penalty(weights: Tensor | Iterable[Tensor]) -> Tensor:
    """sum(w^2) / 2 over one tensor or several -> scalar; its gradient is w, hence the 1/2."""
    return sum((w**2).sum() for w in _as_list(weights)) / 2


def l1_penalty(weights: Tensor | Iterable[Tensor]) -> Tensor:
    """sum(|w|) over one tensor or several -> scalar."""
    return sum(w.abs().sum() for w in _as_list(weights))


# ----------------------------------------------------------------------------- softmax regression


def stable_log_softmax(z: Tensor, dim: int = -1) -> Tensor:
    """log softmax of logits z [..., C] along ``dim`` via log-sum-exp -> same shape.

    Subtracting the row max keeps exp() <= 1, so logits of +-1000 neither overflow nor give
    log(0). The max is detached: log_softmax is shift-invariant, so no gradient flows through it.
    """
    shifted = z - z.max(dim=dim, keepdim=True).values.detach()
    return shifted - torch.log(torch.exp(shifted).sum(dim=dim, keepdim=True))


def softmax(z: Tensor, dim: int = -1) -> Tensor:
    """softmax of logits z [..., C] along ``dim`` -> probabilities, same shape."""
    return torch.exp(stable_log_softmax(z, dim=dim))


class ScratchSoftmaxRegression(nn.Module):
    """Softmax regression returning logits: X [N, ...] (flattened to [N, in]) -> [N, n_classes]."""

    def __init__(
        self,
        in_features: int,
        n_classes: int,
        *,
        init_std: float = 0.01,
        generator: torch.Generator,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.linear = ScratchLinear(
            in_features, n_classes, init_std=init_std, generator=generator, dtype=dtype
        )

    def forward(self, x: Tensor) -> Tensor:
        """X [N, ...] -> logits [N, n_classes]; softmax is left to the loss for stability."""
        return self.linear(x.reshape(x.shape[0], -1))


def scratch_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy from logits [N, C] and integer labels [N] -> scalar mean over the batch."""
    log_probs = stable_log_softmax(logits, dim=1)
    # Pick each row's log-probability of its true class instead of building a one-hot matrix.
    picked = log_probs.gather(1, labels.reshape(-1, 1).long())
    return -picked.mean()


def half_sum_squared_error(y: Tensor, t: Tensor) -> Tensor:
    """0.5 * sum((y - t)^2) over all elements of y, t (any equal shapes) -> scalar (file 003)."""
    return 0.5 * torch.sum((y - t) ** 2)


def cross_entropy_from_probs(p: Tensor, t_onehot: Tensor, eps: float = 1e-7) -> Tensor:
    """-sum(t * log(p + eps)) for p, t of shape [C]; for [N, C] that sum divided by N -> scalar
    (file 003's formula on probabilities, not logits)."""
    # eps keeps log finite when a predicted probability is exactly zero.
    total = -torch.sum(t_onehot * torch.log(p + eps))
    if p.ndim == 1:
        return total
    if p.ndim != 2:
        raise ValueError(f"p must have shape [C] or [N, C], got {tuple(p.shape)}")
    return total / p.shape[0]  # mini-batch form: mean over samples


def multilabel_softmax_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """The book's multi-label loss: mean over rows of -sum_j t_j log softmax(z)_j, for logits and
    0/1 targets [N, L] -> scalar (the `multilabel_softmax` loss)."""
    # torch's log_softmax (max-shifted: logits of 1e3 do not overflow) as the variant has always
    # used it: stable_log_softmax is equal to rounding, not to the bit.
    logp = torch.log_softmax(logits, dim=-1)
    return -(targets.to(logp.dtype) * logp).sum(dim=-1).mean()


def multilabel_sigmoid_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Per-label sigmoid cross-entropy averaged over all N*L entries, logits and 0/1 targets
    [N, L] -> scalar; nn.MultiLabelSoftMarginLoss's value, written out."""
    t = targets.to(logits.dtype)
    # max(z, 0) - z t + log(1 + e^-|z|): -[t log s(z) + (1 - t) log(1 - s(z))] without overflow.
    return (logits.clamp(min=0) - logits * t + torch.log1p(torch.exp(-logits.abs()))).mean()


# ----------------------------------------------------------------------------- activations, MLP


def relu(x: Tensor) -> Tensor:
    """max(x, 0) elementwise, same shape; gradient 0 at x = 0 like torch.relu."""
    return torch.where(x > 0, x, torch.zeros_like(x))


def sigmoid(x: Tensor) -> Tensor:
    """1 / (1 + exp(-x)) elementwise, same shape, without overflow for large |x|."""
    # exp of a non-positive number only: e = exp(-|x|) in (0, 1]. A where() on x (not abs)
    # keeps the derivative correct at exactly 0.
    e = torch.exp(torch.where(x >= 0, -x, x))
    return torch.where(x >= 0, 1 / (1 + e), e / (1 + e))


def tanh(x: Tensor) -> Tensor:
    """tanh(x) = 2 sigmoid(2x) - 1 elementwise, same shape (inherits sigmoid's stability)."""
    return 2 * sigmoid(2 * x) - 1


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """x if x > 0 else negative_slope * x, elementwise, same shape."""
    return torch.where(x > 0, x, negative_slope * x)


ACTIVATION_FUNCTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": relu,
    "sigmoid": sigmoid,
    "tanh": tanh,
    "leaky_relu": leaky_relu,
}


class InvertedDropout(nn.Module):
    """Inverted dropout, x -> same shape: train zeroes each element w.p. p, scales rest by 1/(1-p).

    Eval mode is the identity. The 1/(1-p) keeps E[output] = input, so nothing changes at test
    time. The mask is drawn from ``generator``, so the same seed gives the same mask.
    """

    def __init__(self, p: float, *, generator: torch.Generator) -> None:
        super().__init__()
        if not 0.0 <= float(p) <= 1.0:  # also rejects NaN
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = float(p)
        self.generator = generator

    def forward(self, x: Tensor) -> Tensor:
        """x [any shape] -> same shape."""
        if not self.training or self.p == 0.0:
            return x
        if self.p == 1.0:
            return torch.zeros_like(x)  # every unit dropped; avoids 0 * inf = NaN from 1/(1-p)
        keep = 1.0 - self.p
        # Draw on the generator's device, then move: a CPU generator cannot sample on CUDA.
        u = torch.rand(x.shape, generator=self.generator, device=self.generator.device)
        mask = (u < keep).to(device=x.device, dtype=x.dtype)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ScratchMLP(nn.Module):
    """MLP X [N, ...] (flattened to [N, in]) -> [N, out]; hidden: linear, activation, dropout."""

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        *,
        activation: str = "relu",
        dropout: Sequence[float] | None = None,
        init_std: float = 0.01,
        negative_slope: float = 0.01,
        generator: torch.Generator,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATION_FUNCTIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATION_FUNCTIONS)}, got {activation!r}")
        hidden = list(hidden)
        dropout = [0.0] * len(hidden) if dropout is None else list(dropout)
        if len(dropout) != len(hidden):
            raise ValueError(
                f"need one dropout rate per hidden layer: {len(hidden)} layers, "
                f"{len(dropout)} rates"
            )
        self.activation = activation
        self.negative_slope = negative_slope
        sizes = [in_features, *hidden, out_features]
        self.layers = nn.ModuleList(
            ScratchLinear(a, b, init_std=init_std, generator=generator, dtype=dtype)
            for a, b in zip(sizes[:-1], sizes[1:])
        )
        # Dropout after each hidden activation, as in d2l 4.6; the model's generator draws masks.
        self.dropouts = nn.ModuleList(InvertedDropout(p, generator=generator) for p in dropout)

    def _act(self, x: Tensor) -> Tensor:
        if self.activation == "leaky_relu":
            return leaky_relu(x, self.negative_slope)
        return ACTIVATION_FUNCTIONS[self.activation](x)

    def forward(self, x: Tensor) -> Tensor:
        """X [N, ...] -> [N, out_features] (raw outputs / logits)."""
        h = x.reshape(x.shape[0], -1)
        for layer, drop in zip(self.layers[:-1], self.dropouts):
            h = drop(self._act(layer(h)))
        return self.layers[-1](h)


# ----------------------------------------------------------------------------- hand backprop


class ManualMLP(nn.Module):
    """Hand-backprop MLP: X [N, ...] (flattened to [N, in]) -> hidden layers -> output [N, out].

    Each hidden layer is z = a W + b then a = f(z) with ``activation`` f in ``ACTIVATION_FUNCTIONS``
    (``negative_slope`` for leaky_relu); the output layer is z^L = a W + b with no activation.
    ``output`` chooses the loss J that ``loss`` and ``manual_backward`` compute:

    * ``"softmax"`` (book section 3.7): J = mean over the batch of the cross-entropy of
      softmax(z^L) against integer labels y [N]; ``forward`` returns the logits z^L, so
      argmax and ``scratch_cross_entropy`` apply to it directly.
    * ``"linear"`` (book section 3.4, the trapezoid): the half squared loss
      J = ``squared_loss(z^L, y)`` (eq. 3-40).

    Weights W^l [in, out] ~ N(0, init_std^2) from ``generator``; biases start at 0, or at
    N(0, init_std^2) with ``init_bias=True`` (drawn in the order W^1, b^1, W^2, b^2, ..., as
    the book's trapezoid net draws all four from N(0, 1)). Layer l is a
    ``ScratchLinear`` used as a container: ``state_dict`` keys are ``layers.l.weight`` and
    ``layers.l.bias`` (l = 0 for the first layer), the same as ``ScratchMLP``'s.
    """

    OUTPUTS = ("softmax", "linear")

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        *,
        activation: str = "relu",
        output: str = "softmax",
        negative_slope: float = 0.01,
        init_std: float = 0.01,
        init_bias: bool = False,
        generator: torch.Generator,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if isinstance(hidden, (int, str)) or not isinstance(hidden, Iterable):
            msg = f"hidden must be a sequence of layer sizes, got {hidden!r}"
            raise ValueError(msg)  # noqa: TRY004 - the project reports bad arguments as ValueError
        hidden = list(hidden)
        sizes = [in_features, *hidden, out_features]
        if not all(
            isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 1 for s in sizes
        ):
            raise ValueError(f"layer sizes must be positive integers, got {sizes}")
        sizes = [int(s) for s in sizes]
        in_features, hidden, out_features = sizes[0], sizes[1:-1], sizes[-1]
        if activation not in ACTIVATION_FUNCTIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATION_FUNCTIONS)}, got {activation!r}")
        if output not in self.OUTPUTS:
            raise ValueError(f"output must be one of {list(self.OUTPUTS)}, got {output!r}")
        if output == "softmax" and out_features < 2:
            raise ValueError(f"a softmax output needs >= 2 classes, got {out_features}")
        if not (float(init_std) >= 0 and float(init_std) < float("inf")):  # also rejects NaN
            raise ValueError(f"init_std must be finite and >= 0, got {init_std}")
        if not abs(float(negative_slope)) < float("inf"):  # also rejects NaN
            raise ValueError(f"negative_slope must be finite, got {negative_slope}")
        self.in_features, self.hidden, self.out_features = in_features, hidden, out_features
        self.activation, self.output = activation, output
        self.negative_slope = float(negative_slope)
        layers = []
        for a, b in itertools.pairwise(sizes):
            layer = ScratchLinear(a, b, init_std=init_std, generator=generator, dtype=dtype)
            if init_bias:  # drawn right after this layer's W
                layer.bias = nn.Parameter(_normal((b,), init_std, generator, dtype))
            layers.append(layer)
        self.layers = nn.ModuleList(layers)

    def _act(self, z: Tensor) -> Tensor:
        if self.activation == "leaky_relu":
            return leaky_relu(z, self.negative_slope)
        return ACTIVATION_FUNCTIONS[self.activation](z)

    def _act_derivative(self, z: Tensor, a: Tensor) -> Tensor:
        """f'(z) from the stored pre-activation z and activation a = f(z), same shape."""
        if self.activation == "sigmoid":
            return a * (1 - a)  # s'(z) = s(z)(1 - s(z)), with s(z) = a (not s(a))
        if self.activation == "tanh":
            return 1 - a * a  # tanh'(z) = 1 - tanh(z)^2
        if self.activation == "relu":
            return (z > 0).to(z.dtype)  # 0 at z = 0, like relu's autograd
        return torch.where(z > 0, torch.ones_like(z), torch.full_like(z, self.negative_slope))

    def _forward(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Pre-activations zs = [z^1 .. z^L] and activations acts = [x, a^1 .. a^{L-1}]."""
        a = x.reshape(x.shape[0], -1)
        zs, acts = [], [a]
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            z = layer(a)
            zs.append(z)
            if i < last:
                a = self._act(z)
                acts.append(a)
        return zs, acts

    def forward(self, x: Tensor) -> Tensor:
        """X [N, ...] -> raw outputs [N, out] (logits for output='softmax')."""
        return self._forward(x)[0][-1]

    def _labels(self, y: Tensor, n: int) -> Tensor:
        """Integer class labels [N] -> [N, 1] int64, for gather/scatter."""
        if y.numel() != n:
            raise ValueError(
                f"output='softmax' needs one integer class label per sample: {n} samples, "
                f"labels of shape {tuple(y.shape)}"
            )
        return y.reshape(-1, 1).long()

    def loss(self, x: Tensor, y: Tensor) -> Tensor:
        """J for X [N, ...] and y (labels [N] for softmax; [N] or [N, out] for linear) -> scalar.

        Built from differentiable ops only, so ``loss(x, y).backward()`` is the autograd oracle
        for ``manual_backward``.
        """
        out = self.forward(x)
        if self.output == "softmax":
            return scratch_cross_entropy(out, self._labels(y, out.shape[0]))
        return squared_loss(out, y)

    def manual_backward(self, x: Tensor, y: Tensor) -> Tensor:
        """J for X [N, ...], y; writes every p.grad by hand (overwriting); returns J (detached).

        Output error delta^L = dJ/dz^L:
            softmax: (softmax(z^L) - onehot(y)) / N     (eq. 3-64, a^L - y, per-sample mean)
            linear:  (z^L - y) / numel                  (the 1/2 of J cancels the square's 2)
        then, for l = L, ..., 1 (eqs. 3-65..3-67):
            dJ/dW^l = (a^{l-1})^T delta^l,   dJ/db^l = sum_rows delta^l
            delta^{l-1} = (delta^l (W^l)^T) * f'(z^{l-1})
        with f' evaluated at the pre-activation: a(1-a) for sigmoid and 1-a^2 for tanh (a is
        the stored activation), z > 0 for relu, 1 or negative_slope for leaky_relu.
        """
        with torch.no_grad():
            zs, acts = self._forward(x)
            out = zs[-1]
            if self.output == "softmax":
                labels = self._labels(y, out.shape[0])
                log_probs = stable_log_softmax(out, dim=1)
                loss = -log_probs.gather(1, labels).mean()
                onehot = torch.zeros_like(out).scatter_(1, labels, 1.0)
                delta = (torch.exp(log_probs) - onehot) / out.shape[0]
            else:
                y = y.reshape(out.shape).to(out.dtype)
                loss = ((out - y) ** 2 / 2).mean()
                delta = (out - y) / out.numel()
            grads: list[tuple[Tensor, Tensor]] = []
            for i in range(len(self.layers) - 1, -1, -1):  # acts[i] feeds layer i, gives zs[i]
                grads.append((acts[i].T @ delta, delta.sum(dim=0)))
                if i > 0:  # error of the hidden layer below
                    f_prime = self._act_derivative(zs[i - 1], acts[i])
                    delta = (delta @ self.layers[i].weight.T) * f_prime
            for (gw, gb), layer in zip(reversed(grads), self.layers):
                layer.weight.grad = gw.detach().clone()
                layer.bias.grad = gb.detach().clone()
        return loss.detach()

    def extra_repr(self) -> str:
        sizes = [self.in_features, *self.hidden, self.out_features]
        act = self.activation
        if act == "leaky_relu":
            act += f"({self.negative_slope})"
        return f"sizes={sizes}, activation={act}, output={self.output}"


# ----------------------------------------------------------------------------- numerical gradient


def numerical_gradient(
    f: Callable[[], Tensor | float], params: Sequence[Tensor], h: float = 1e-6
) -> list[Tensor]:
    """Central differences (f(x+h) - f(x-h)) / 2h of scalar ``f()`` wrt each tensor in params.

    ``f`` takes no arguments and reads the tensors in ``params``, which are perturbed in place
    one element at a time and restored exactly. Returns tensors shaped like ``params``. The
    default h = 1e-6 suits float64; in float32 use h ~ 1e-3 (rounding error grows as eps / h).
    """
    grads = []
    with torch.no_grad():
        for p in params:
            data = p.detach()  # shares storage with p, so writes are seen by f()
            grad = torch.zeros_like(data)
            for idx in itertools.product(*(range(n) for n in data.shape)):
                original = data[idx].clone()
                data[idx] = original + h
                f_plus = float(f())
                data[idx] = original - h
                f_minus = float(f())
                data[idx] = original  # restore the exact original value, not (x - h) + h
                grad[idx] = (f_plus - f_minus) / (2 * h)
            grads.append(grad)
    return grads
