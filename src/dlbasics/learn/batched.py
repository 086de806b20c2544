"""Many small models of one architecture trained at once, as one model with stacked weights.

A K-fold grid of small models (softmax regression, digits-size MLPs) spends its time in
per-step overhead (Python, autograd, kernel launches), not arithmetic. G configurations that
share a fold's batch order are therefore trained together: the first layer's G weight
matrices are concatenated into one [in, G * out] matrix (one large matmul for the shared
input batch), deeper layers are stacked as [G, in, out] and applied with one batched matmul.
The loss that is differentiated is the SUM over configurations of each one's mean batch loss,
so each configuration's weights receive exactly its own gradient. The update is torch.optim.SGD
(momentum buffer, weight decay on weights only) with per-configuration lr, momentum and decay.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dlbasics.config.variants import ModelSpec, OptimizerSpec
from dlbasics.learn.models import ACTIVATION_LAYERS, BUILDERS

LOSSES = ("cross_entropy", "mse")


def supports(
    spec: ModelSpec, optimizer: OptimizerSpec | None = None, loss: str | None = None
) -> bool:
    """Whether this architecture (and optimiser and loss) can be trained by BatchedTrainer."""
    # (PReLU's slope is a parameter outside the stacked linear layers.)
    arch = (spec.kind in ("linear", "mlp") and not any(p > 0 for p in spec.dropout)
            and spec.activation != "prelu")
    opt = optimizer is None or optimizer.name == "sgd"
    return arch and opt and (loss is None or loss in LOSSES)


def linear_layers(spec: ModelSpec, n_in: int, n_out: int) -> list[str]:
    """State-dict prefixes ('' or '0.', '2.', ...) of the nn.Linear layers of build_model's
    module for `spec`, in forward order."""
    with torch.device("meta"):
        model = BUILDERS[spec.kind](spec, n_in, n_out)
    return [f"{name}." if name else "" for name, m in model.named_modules()
            if isinstance(m, nn.Linear)]


# Batching removes per-step overhead (Python, autograd, kernel launches); once a fit's own
# matmuls dominate, both paths do the same FLOPs and stacking G copies multiplies activation
# memory by G. The size-rule rows of `make bench` measure where that happens.
BATCHED_MAX_WEIGHTS = 60_000


def batched_is_faster(spec: ModelSpec, n_in: int, n_out: int, n_configs: int) -> bool:
    """The size rule: True when training `n_configs` fits of `spec` batched is expected to beat
    training them one after another (at most BATCHED_MAX_WEIGHTS weights and biases per fit)."""
    if n_configs < 2 or not supports(spec):
        return False
    return n_weights(spec, n_in, n_out) <= BATCHED_MAX_WEIGHTS


def n_weights(spec: ModelSpec, n_in: int, n_out: int) -> int:
    """Weights and biases of one linear or mlp model of `spec` with n_in inputs, n_out outputs."""
    widths = [n_in, *spec.hidden, n_out]
    return sum(a * b + b for a, b in zip(widths, widths[1:]))


class _Stack:
    """G configurations' parameters, stacked.

    weights[0]: [in, G, h1] (concatenated: one matmul for the shared input batch);
    weights[l > 0]: [G, in, out]; biases[l]: [G, out] or None.
    """

    def __init__(self, prefixes: list[str], states: Sequence[dict[str, torch.Tensor]],
                 device: torch.device):
        self.prefixes = prefixes
        self.has_bias = f"{prefixes[0]}bias" in states[0]
        self.weights: list[torch.Tensor] = []
        self.biases: list[torch.Tensor | None] = []
        for i, pre in enumerate(prefixes):
            # nn.Linear keeps W as [out, in]; here it is W^T ([in, out]) so that y = x W + b.
            w = torch.stack([s[f"{pre}weight"].t() for s in states], dim=1 if i == 0 else 0)
            self.weights.append(w.to(device).contiguous().requires_grad_())
            b = (torch.stack([s[f"{pre}bias"] for s in states]).to(device).requires_grad_()
                 if f"{pre}bias" in states[0] else None)
            self.biases.append(b)

    def params(self) -> list[tuple[torch.Tensor, int, bool]]:
        """(tensor, its G dimension, decayed?) for every stacked parameter."""
        out = []
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            out.append((w, 1 if i == 0 else 0, True))
            if b is not None:
                out.append((b, 0, False))
        return out

    def forward(self, xb: torch.Tensor, act: nn.Module | None) -> torch.Tensor:
        """Outputs of every configuration for the shared batch xb [B, in]: [G, B, out]."""
        w0, b0 = self.weights[0], self.biases[0]
        n_in, g, h = w0.shape
        flat = w0.reshape(n_in, g * h)  # [in, G * h], a view
        z = torch.addmm(b0.reshape(1, g * h), xb, flat) if b0 is not None else xb @ flat
        z = z.view(-1, g, h).transpose(0, 1).contiguous()  # [G, B, h]
        for w, b in zip(self.weights[1:], self.biases[1:]):
            z = act(z)
            z = torch.baddbmm(b.unsqueeze(1), z, w)  # [G, B, out]
        return z

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only the configurations `rows` (drops diverged ones)."""
        with torch.no_grad():
            self.weights = [w.index_select(1 if i == 0 else 0, rows).requires_grad_()
                            for i, w in enumerate(self.weights)]
            self.biases = [None if b is None else b.index_select(0, rows).requires_grad_()
                           for b in self.biases]

    def state_dict(self, g: int) -> dict[str, torch.Tensor]:
        """Configuration g's parameters in build_model's layout (CPU, detached)."""
        out: dict[str, torch.Tensor] = {}
        for i, (pre, w, b) in enumerate(zip(self.prefixes, self.weights, self.biases)):
            wg = w[:, g] if i == 0 else w[g]
            out[f"{pre}weight"] = wg.detach().t().contiguous().cpu()
            if b is not None:
                out[f"{pre}bias"] = b[g].detach().clone().cpu()
        return out


def _per_config_loss(out: torch.Tensor, yb: torch.Tensor, loss: str) -> torch.Tensor:
    """Mean batch loss of each configuration: out [G, B, C], yb [B] or [B, C] -> [G]."""
    if loss == "cross_entropy":
        logp = F.log_softmax(out, dim=-1)
        idx = yb.view(1, -1, 1).expand(out.shape[0], -1, 1)
        return -logp.gather(-1, idx).squeeze(-1).mean(1)
    return (out - yb).square().mean((1, 2))


class BatchedTrainer:
    """G configurations of one architecture on one training set, advanced one epoch at a time.

    Configuration g starts from init_states[g] (a state_dict of build_model(spec, n_in, n_out))
    and follows torch.optim.SGD with optimizers[g]'s lr, momentum and weight_decay (weights only).
    Every epoch draws ONE torch.randperm(N, generator=generator), as training.fit does, and all
    configurations see the same batches, so each one equals a separate training.fit run with
    build_optimizer(optimizers[g]) and the same generator state, up to float rounding.
    X [N, n_in]; y [N] (class indices, cross_entropy) or [N, n_out] (targets, mse). The compute
    dtype and device are those of X. `alive` lists the original index of every configuration
    still trained; keep() drops the others (a diverged or early-stopped one).
    """

    def __init__(
        self,
        spec: ModelSpec,
        n_in: int,
        n_out: int,
        optimizers: Sequence[OptimizerSpec],
        init_states: Sequence[dict[str, torch.Tensor]],
        X: torch.Tensor,
        y: torch.Tensor,
        *,
        loss: str,
        batch_size: int,
        generator: torch.Generator,
    ):
        if len(optimizers) != len(init_states) or not optimizers:
            raise ValueError(f"one initial state per optimizer: got {len(optimizers)} optimizers "
                             f"and {len(init_states)} initial states")
        if not supports(spec, loss=loss):
            raise ValueError(f"BatchedTrainer trains kind linear or mlp without dropout with "
                             f"loss {' or '.join(LOSSES)}; got kind {spec.kind}, dropout "
                             f"{spec.dropout}, loss {loss}")
        for i, o in enumerate(optimizers):
            if o.name != "sgd":
                raise ValueError(f"optimizers[{i}].name: expected sgd, found {o.name!r}")
        self.X, self.y, self.loss = X, y, loss
        self.batch_size, self.generator = batch_size, generator
        device, dtype = X.device, X.dtype
        self.stack = _Stack(linear_layers(spec, n_in, n_out),
                            [{k: v.to(dtype) for k, v in s.items()} for s in init_states], device)
        self.act = ACTIVATION_LAYERS[spec.activation](spec) if spec.hidden else None

        def hyper(name: str) -> torch.Tensor:  # [G]
            return torch.tensor([getattr(o, name) for o in optimizers], dtype=dtype,
                                device=device)

        self.lr, self.mom, self.wd = hyper("lr"), hyper("momentum"), hyper("weight_decay")
        self.use_mom = bool((self.mom != 0).any())
        self.use_wd = bool((self.wd != 0).any())
        self.bufs: list[torch.Tensor | None] = [None] * len(self.stack.params())
        self.alive = list(range(len(optimizers)))

    def epoch(self) -> list[float]:
        """One epoch of every configuration still trained; the mean minibatch loss of each, in
        `alive` order (NaN or infinite for one that diverged)."""
        X, y, stack, n = self.X, self.y, self.stack, self.X.shape[0]
        lr, mom, wd = self.lr, self.mom, self.wd
        perm = torch.randperm(n, generator=self.generator).to(X.device)
        total = torch.zeros(len(self.alive), dtype=torch.float64, device=X.device)
        for start in range(0, n, self.batch_size):
            idx = perm[start : start + self.batch_size]
            xb, yb = X.index_select(0, idx), y.index_select(0, idx)
            per_config = _per_config_loss(stack.forward(xb, self.act), yb, self.loss)  # [G]
            params = stack.params()
            for p, _, _ in params:
                p.grad = None
            # d(sum_g loss_g)/d W_g = d loss_g / d W_g: each configuration its own gradient.
            per_config.sum().backward()
            with torch.no_grad():
                for j, (p, gdim, decayed) in enumerate(params):
                    shape = [1] * p.ndim
                    shape[gdim] = -1
                    d = p.grad
                    if decayed and self.use_wd:
                        # grad + wd * w, in place (the grad is dropped before the next step):
                        # a new tensor per step cost more than the arithmetic.
                        d.addcmul_(wd.view(shape), p)
                    if self.use_mom:
                        # torch.optim.SGD: buf = grad on the first step, then mom * buf + grad.
                        if self.bufs[j] is None:
                            self.bufs[j] = d.clone()
                        else:
                            self.bufs[j].mul_(mom.view(shape)).add_(d)
                        d = self.bufs[j]
                    p.addcmul_(d, lr.view(shape), value=-1.0)
            total += per_config.detach().double() * idx.shape[0]
        return (total / n).tolist()

    def keep(self, positions: Sequence[int]) -> None:
        """Keep only the configurations at these positions of `alive`."""
        if list(positions) == list(range(len(self.alive))):
            return
        rows = torch.tensor(list(positions), dtype=torch.long, device=self.X.device)
        self.alive = [self.alive[k] for k in positions]
        if not self.alive:
            return
        self.stack.keep(rows)
        self.bufs = [None if b is None else b.index_select(gdim, rows)
                     for b, (_, gdim, _) in zip(self.bufs, self.stack.params())]
        self.lr, self.mom, self.wd = self.lr[rows], self.mom[rows], self.wd[rows]

    @torch.no_grad()
    def outputs(self, X: torch.Tensor) -> torch.Tensor:
        """Outputs of every configuration still trained for X [N, n_in]: [G_alive, N, n_out]."""
        return self.stack.forward(X.to(self.X.dtype), self.act)

    def state_dict(self, position: int) -> dict[str, torch.Tensor]:
        """The configuration at this position of `alive`, in build_model's layout (CPU)."""
        return self.stack.state_dict(position)
