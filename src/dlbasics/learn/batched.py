"""Many small models of one architecture trained at once, as one model with stacked weights.

A K-fold grid of small models (softmax regression, digits-size MLPs) spends its time in
per-step overhead (Python, autograd, kernel launches), not arithmetic. G configurations that
share a fold's batch order are therefore trained together, and the K folds of a search (of one
size) as more members of the same batch: K * G members, one batched product per layer and step.
Weights keep nn.Linear's [out, in] layout and activations are [members, features, batch], so the
small output layer runs as W [C, h] @ a [h, B] (about 4x the GFLOP/s of [B, h] @ [h, C] at one
thread; benchmarks/batched_layout.py), and a fold's G first layers are one [G * h, in] matrix
applied to the fold's shared input batch. The loss that is differentiated is the SUM over members
of each one's mean batch loss, so each member's weights receive exactly its own gradient. The
update is torch.optim.SGD (momentum buffer, weight decay on weights only) with per-configuration
lr, momentum and decay.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    """K folds x G configurations' parameters: K * G members, member m = k * G + g.

    weights[l]: [K * G, out, in], each member's matrix in nn.Linear's own [out, in] layout;
    biases[l]: [K * G, out, 1] or None. Activations are feature-major, [K * G, features, B]:
    every product has the batch (or the hidden width) as its long side and the few outputs as
    its short one (W [C, h] @ a [h, B]), the layout in which MKL's small products run several
    times faster than the row-major [B, h] @ [h, C] (benchmarks/batched_layout.py times both).
    The first layer's G matrices of a fold are one [G * h, in] matrix: one product per fold for
    the fold's shared input batch.
    """

    def __init__(self, prefixes: list[str], states: Sequence[dict[str, torch.Tensor]],
                 folds: int, device: torch.device):
        self.prefixes, self.folds = prefixes, folds
        self.weights: list[torch.Tensor] = []
        self.biases: list[torch.Tensor | None] = []
        for pre in prefixes:
            w = torch.stack([s[f"{pre}weight"] for s in states])  # [G, out, in]
            self.weights.append(w.repeat(folds, 1, 1).to(device).contiguous().requires_grad_())
            b = (torch.stack([s[f"{pre}bias"] for s in states]).unsqueeze(-1)
                 .repeat(folds, 1, 1).to(device).contiguous().requires_grad_()
                 if f"{pre}bias" in states[0] else None)
            self.biases.append(b)

    def params(self) -> list[tuple[torch.Tensor, bool]]:
        """(tensor [K * G, ...], decayed?) for every stacked parameter."""
        out = []
        for w, b in zip(self.weights, self.biases):
            out.append((w, True))
            if b is not None:
                out.append((b, False))
        return out

    def forward(self, xt: torch.Tensor, act: nn.Module | None) -> torch.Tensor:
        """Outputs of every member for its fold's batch, xt [K, in, B] (features first):
        [K * G, out, B]."""
        w0, b0 = self.weights[0], self.biases[0]
        m, h, n_in = w0.shape
        k = self.folds
        flat = w0.view(k, (m // k) * h, n_in)  # a fold's G first layers: one [G * h, in] matrix
        z = (torch.baddbmm(b0.view(k, (m // k) * h, 1), flat, xt) if b0 is not None
             else torch.bmm(flat, xt)).view(m, h, -1)
        for w, b in zip(self.weights[1:], self.biases[1:]):
            z = act(z)
            z = torch.baddbmm(b, w, z) if b is not None else torch.bmm(w, z)
        return z

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only the members `rows` (drops diverged or stopped configurations)."""
        with torch.no_grad():
            self.weights = [w.index_select(0, rows).requires_grad_() for w in self.weights]
            self.biases = [None if b is None else b.index_select(0, rows).requires_grad_()
                           for b in self.biases]

    def state_dict(self, member: int) -> dict[str, torch.Tensor]:
        """One member's parameters in build_model's layout (CPU, detached)."""
        out: dict[str, torch.Tensor] = {}
        for pre, w, b in zip(self.prefixes, self.weights, self.biases):
            out[f"{pre}weight"] = w[member].detach().clone().cpu()
            if b is not None:
                out[f"{pre}bias"] = b[member, :, 0].detach().clone().cpu()
        return out


def _per_member_loss(out: torch.Tensor, yb: torch.Tensor, loss: str, k: int) -> torch.Tensor:
    """Mean batch loss of each member: out [K * G, C, B]; yb [K, B] (class indices) or
    [K, B, C] (targets) -> [K * G]."""
    m, c, b = out.shape
    out = out.view(k, m // k, c, b)
    if loss == "cross_entropy":
        logp = F.log_softmax(out, dim=2)
        idx = yb.view(k, 1, 1, b).expand(k, m // k, 1, b)
        return -logp.gather(2, idx).view(m, b).mean(1)
    return (out - yb.transpose(1, 2).unsqueeze(1)).square().view(m, c * b).mean(1)


class BatchedTrainer:
    """G configurations of one architecture on one training set (or on K folds of equal size),
    advanced one epoch at a time.

    Configuration g starts from init_states[g] (a state_dict of build_model(spec, n_in, n_out))
    and follows torch.optim.SGD with optimizers[g]'s lr, momentum and weight_decay (weights only).
    Every epoch draws ONE torch.randperm(N, generator=generator), as training.fit does, and all
    configurations see the same batches, so each one equals a separate training.fit run with
    build_optimizer(optimizers[g]) and the same generator state, up to float rounding.
    X [N, n_in]; y [N] (class indices, cross_entropy) or [N, n_out] (targets, mse). The compute
    dtype and device are those of X. `alive` lists the original index of every configuration
    still trained; keep() drops the others (a diverged or early-stopped one).

    K folds at once: X [K, N, n_in], y [K, N] or [K, N, n_out] and one generator per fold (a
    sequence of K); every configuration trains on every fold, K * G members in one batched model,
    each fold's randperm drawn from its own generator exactly as a trainer of that fold alone
    draws it. epoch() then gives, per configuration, the K folds' losses; keep() keeps or drops
    a configuration on every fold.
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
        generator: torch.Generator | Sequence[torch.Generator],
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
        self.one_fold = X.ndim == 2
        if self.one_fold:
            X, y = X.unsqueeze(0), y.unsqueeze(0)
        gens = [generator] if isinstance(generator, torch.Generator) else list(generator)
        if len(gens) != X.shape[0] or y.shape[:2] != X.shape[:2]:
            raise ValueError(f"one generator and one y per fold: X holds {X.shape[0]} folds of "
                             f"{X.shape[1]} rows, y {tuple(y.shape)}, {len(gens)} generators")
        self.folds = X.shape[0]
        self.X, self.y, self.loss = X, y, loss
        self.batch_size, self.generators = batch_size, gens
        device, dtype = X.device, X.dtype
        self.stack = _Stack(linear_layers(spec, n_in, n_out),
                            [{k: v.to(dtype) for k, v in s.items()} for s in init_states],
                            self.folds, device)
        self.act = ACTIVATION_LAYERS[spec.activation](spec) if spec.hidden else None

        def hyper(name: str) -> torch.Tensor:  # [K * G, 1, 1], member-major as the stack
            return torch.tensor([getattr(o, name) for o in optimizers], dtype=dtype,
                                device=device).repeat(self.folds).view(-1, 1, 1)

        self.lr, self.mom, self.wd = hyper("lr"), hyper("momentum"), hyper("weight_decay")
        self.use_mom = bool((self.mom != 0).any())
        self.use_wd = bool((self.wd != 0).any())
        self.bufs: list[torch.Tensor | None] = [None] * len(self.stack.params())
        self.alive = list(range(len(optimizers)))

    def epoch(self) -> list:
        """One epoch of every configuration still trained, in `alive` order: its mean minibatch
        loss (NaN or infinite for one that diverged); with K folds, the list of its K folds'."""
        X, y, stack, k, n = self.X, self.y, self.stack, self.folds, self.X.shape[1]
        lr, mom, wd = self.lr, self.mom, self.wd
        perms = [torch.randperm(n, generator=g).to(X.device) for g in self.generators]
        # Folds of one size drawn from generators of one seed share the order: one index_select.
        shared = all(torch.equal(perms[0], p) for p in perms[1:])
        perm = perms[0] if shared else torch.stack(perms)
        folds = torch.arange(k, device=X.device).unsqueeze(1)
        total = torch.zeros(k * len(self.alive), dtype=torch.float64, device=X.device)
        for start in range(0, n, self.batch_size):
            if shared:
                idx = perm[start : start + self.batch_size]
                xb, yb = X.index_select(1, idx), y.index_select(1, idx)
            else:
                idx = perm[:, start : start + self.batch_size]
                xb, yb = X[folds, idx], y[folds, idx]
            # [K * G] mean batch losses; xb [K, B, in] read as [K, in, B] (a view).
            per_member = _per_member_loss(stack.forward(xb.transpose(1, 2), self.act), yb,
                                          self.loss, k)
            params = stack.params()
            for p, _ in params:
                p.grad = None
            # d(sum_m loss_m)/d W_m = d loss_m / d W_m: each member its own gradient.
            per_member.sum().backward()
            with torch.no_grad():
                for j, (p, decayed) in enumerate(params):
                    d = p.grad
                    if decayed and self.use_wd:
                        # grad + wd * w, in place (the grad is dropped before the next step):
                        # a new tensor per step cost more than the arithmetic.
                        d.addcmul_(wd, p)
                    if self.use_mom:
                        # torch.optim.SGD: buf = grad on the first step, then mom * buf + grad.
                        if self.bufs[j] is None:
                            self.bufs[j] = d.clone()
                        else:
                            self.bufs[j].mul_(mom).add_(d)
                        d = self.bufs[j]
                    p.addcmul_(d, lr, value=-1.0)
            total += per_member.detach().double() * xb.shape[1]
        means = (total / n).view(k, -1).t().tolist()  # [G][K]
        return [m[0] for m in means] if self.one_fold else means

    def keep(self, positions: Sequence[int]) -> None:
        """Keep only the configurations at these positions of `alive` (on every fold)."""
        if list(positions) == list(range(len(self.alive))):
            return
        g = len(self.alive)
        rows = torch.tensor([f * g + p for f in range(self.folds) for p in positions],
                            dtype=torch.long, device=self.X.device)
        self.alive = [self.alive[p] for p in positions]
        if not self.alive:
            return
        self.stack.keep(rows)
        self.bufs = [None if b is None else b.index_select(0, rows) for b in self.bufs]
        self.lr, self.mom, self.wd = self.lr[rows], self.mom[rows], self.wd[rows]

    @torch.no_grad()
    def outputs(self, X: torch.Tensor) -> torch.Tensor:
        """Outputs of every configuration still trained: X [N, n_in] -> [G_alive, N, n_out];
        with K folds, X [K, N, n_in] (each fold's own rows) -> [K, G_alive, N, n_out]."""
        xt = X.to(self.X.dtype).view(self.folds, *X.shape[-2:]).transpose(1, 2)
        out = self.stack.forward(xt, self.act)  # [K * G, C, N]
        out = out.view(self.folds, -1, *out.shape[1:]).transpose(2, 3)
        return out[0] if self.one_fold else out

    def state_dict(self, position: int, fold: int = 0) -> dict[str, torch.Tensor]:
        """The configuration at this position of `alive` (on this fold), in build_model's
        layout (CPU)."""
        return self.stack.state_dict(fold * len(self.alive) + position)
