"""Train many clients' autoencoders at once: their parameters stacked, one ``bmm`` per layer per step.

:func:`train_autoencoders_batched` reproduces, for each client ``k``, what
``fediot.models.train.train_autoencoder(module_k, xs[k], configs[k], seed=seeds[k])`` does after
``set_weights(module_k, weights[k])``:

- the same mini-batch order: per epoch ``torch.randperm(n_k, generator=g_k)`` with
  ``g_k = torch.Generator().manual_seed(seeds[k])``, batches of ``batch_size`` rows, the last one partial;
- the same loss and gradient: the per-client mean squared error over each batch (``nn.MSELoss``), its exact
  backward formula, ``tanh_backward`` through every ``Tanh`` (a final one after the output layer included);
- the same optimiser: a fresh ``torch.optim`` SGD (momentum, weight decay) or Adam (bias correction, eps
  placement) per client, run by ``torch.optim``'s own functional update over the stacked tensors;
- the same reported loss: the mean batch loss of the last epoch, weighted by batch size;
- FedProx (``proximal_mu > 0``): the proximal term's gradient ``mu (w - w_0)`` added to each client's
  gradient, ``w_0`` its start weights, as autograd adds it in the sequential loop.

Clients run in lock-step, one optimiser step each per step. A client with fewer steps than the others
drops out once its steps are done (clients are ordered by step count, so the active ones are a prefix of
the stacked tensors and a finished client's parameters and optimiser state are left untouched). In a step
where the clients' batches differ in size (someone's last, partial batch), each batch size gets its own
pass, so every matrix product has the shapes of the sequential loop: nothing is padded. On CPU ``bmm``
runs the same GEMM per client as ``nn.Linear`` does alone, so the results are bit-identical to the
sequential loop in our measurements, except for 1-row batches (~1e-8 with Adam); the tests allow 1e-6
(SGD) and 1e-5 (Adam) after several federated rounds (``tests/unit/sim/test_batched.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from torch.optim.adam import adam
from torch.optim.sgd import sgd

from fediot.federated.client import AutoencoderClient, Client, FitPlan
from fediot.federated.types import ClientUpdate, Config
from fediot.models.autoencoder import Autoencoder
from fediot.models.train import TrainConfig
from fediot.models.weights import Weights

__all__ = ["BatchedAutoencoderExecutor", "train_autoencoders_batched"]


@dataclass(frozen=True, slots=True)
class _Layer:
    """One ``nn.Linear`` of the chain: its weight and bias positions in ``state_dict`` order."""

    weight_index: int
    bias_index: int
    tanh: bool


def _linear_tanh_chain(module: nn.Module) -> list[_Layer]:
    """Read ``module`` as a chain of ``Linear`` layers, each optionally followed by ``Tanh``.

    Raises
    ------
    TypeError
        If ``module`` is not an :class:`Autoencoder` or an ``nn.Sequential`` of ``Linear``/``Tanh`` only,
        a ``Linear`` has no bias, or the state holds tensors that are not the chain's parameters.
    """
    if isinstance(module, Autoencoder):
        named = [(f"encoder.{n}", m) for n, m in module.encoder.named_children()]
        named += [(f"decoder.{n}", m) for n, m in module.decoder.named_children()]
    elif isinstance(module, nn.Sequential):
        named = list(module.named_children())
    else:
        raise TypeError(
            f"batched training supports Autoencoder or nn.Sequential, got {type(module).__name__}"
        )
    keys = list(module.state_dict())
    layers: list[_Layer] = []
    for i, (name, child) in enumerate(named):
        if isinstance(child, nn.Linear):
            if child.bias is None:
                raise TypeError(f"batched training needs biases; {name!r} has none")
            nxt = named[i + 1][1] if i + 1 < len(named) else None
            layers.append(
                _Layer(keys.index(f"{name}.weight"), keys.index(f"{name}.bias"), isinstance(nxt, nn.Tanh))
            )
        elif not isinstance(child, nn.Tanh) or i == 0 or not isinstance(named[i - 1][1], nn.Linear):
            raise TypeError(
                f"batched training supports Linear layers each optionally followed by Tanh; {name!r}"
            )
    if not layers or 2 * len(layers) != len(keys):
        raise TypeError(
            "batched training needs a module whose state is exactly its Linear layers' parameters"
        )
    linears = [child for _, child in named if isinstance(child, nn.Linear)]
    if linears[-1].out_features != linears[0].in_features:
        raise TypeError(
            "batched training trains autoencoders: the last Linear's output width "
            f"({linears[-1].out_features}) must equal the first one's input width ({linears[0].in_features})"
        )
    return layers


def train_autoencoders_batched(
    module: nn.Module,
    weights: Sequence[Weights],
    xs: Sequence[NDArray[np.float32]],
    configs: Sequence[TrainConfig],
    seeds: Sequence[int],
) -> list[tuple[Weights, float]]:
    """Train one autoencoder per client, all at once, as the sequential ``train_autoencoder`` would.

    Parameters
    ----------
    module : nn.Module
        Template of the architecture (an :class:`Autoencoder`, or an ``nn.Sequential`` of ``Linear``
        layers each optionally followed by ``Tanh``); it is not modified.
    weights : sequence of Weights
        Each client's starting parameters, in ``module``'s ``state_dict`` order.
    xs : sequence of ndarray of shape (n_k, n_features)
        Each client's scaled training rows (``n_k >= 1``; the row counts may differ).
    configs : sequence of TrainConfig
        Each client's hyper-parameters; clients with equal configs are trained together.
    seeds : sequence of int
        Each client's seed (fixes its mini-batch order).

    Returns
    -------
    list of (Weights, float)
        Per client, in input order: the trained parameters (float32 copies, ``state_dict`` order) and the
        mean loss of the last epoch (NaN for ``epochs == 0``).

    Raises
    ------
    ValueError
        If the sequences differ in length, a client has no rows, or a shape does not match ``module``.
    TypeError
        If ``module`` is not a Linear/Tanh chain (see above).

    Examples
    --------
    >>> import numpy as np
    >>> from fediot.models.autoencoder import AutoencoderConfig
    >>> from fediot.models.train import train_autoencoder
    >>> from fediot.models.weights import get_weights, set_weights
    >>> ae = Autoencoder(AutoencoderConfig(num_features=6))
    >>> w0 = get_weights(ae)
    >>> xs = [np.zeros((5, 6), np.float32), np.ones((3, 6), np.float32)]
    >>> configs = [TrainConfig(batch_size=2)] * 2
    >>> (w_a, loss_a), (w_b, loss_b) = train_autoencoders_batched(ae, [w0, w0], xs, configs, [0, 1])
    >>> set_weights(ae, w0)
    >>> loss = train_autoencoder(ae, xs[1], configs[1], seed=1)  # the same client, alone
    >>> all(np.allclose(a, b, atol=1e-6) for a, b in zip(w_b, get_weights(ae))), abs(loss - loss_b) < 1e-6
    (True, True)
    """
    num = len(weights)
    if not len(xs) == len(configs) == len(seeds) == num:
        raise ValueError(
            f"got {num} weights, {len(xs)} datasets, {len(configs)} configs and {len(seeds)} seeds"
        )
    layers = _linear_tanh_chain(module)
    shapes = [tuple(t.shape) for t in module.state_dict().values()]
    num_features = shapes[layers[0].weight_index][1]
    for k in range(num):
        if xs[k].ndim != 2 or xs[k].shape[0] == 0 or xs[k].shape[1] != num_features:
            raise ValueError(f"client {k}: need rows of shape (n >= 1, {num_features}), got {xs[k].shape}")
        got = [tuple(np.shape(w)) for w in weights[k]]
        if got != shapes:
            raise ValueError(f"client {k}: weight shapes {got} do not match the module's {shapes}")
    results: list[tuple[Weights, float] | None] = [None] * num
    groups: dict[TrainConfig, list[int]] = {}
    for k, config in enumerate(configs):
        groups.setdefault(config, []).append(k)
    for config, members in groups.items():
        if config.epochs == 0:
            for k in members:
                results[k] = ([np.asarray(w, dtype=np.float32).copy() for w in weights[k]], float("nan"))
            continue
        trained = _train_group(
            layers,
            len(shapes),
            [weights[k] for k in members],
            [xs[k] for k in members],
            config,
            [seeds[k] for k in members],
        )
        for k, result in zip(members, trained, strict=True):
            results[k] = result
    return [r for r in results if r is not None]


class _StepPlan:
    """The mini-batches of every step of a group, as the sequential loop would draw them.

    Clients are in descending order of step count, so the clients active at step ``s`` are the first
    ``active[s]``.
    """

    def __init__(self, sizes_n: list[int], config: TrainConfig, seeds: list[int]) -> None:
        b, epochs = config.batch_size, config.epochs
        self.steps_per_epoch = [math.ceil(n / b) for n in sizes_n]
        self.client_steps = [epochs * s for s in self.steps_per_epoch]
        self.num_clients = len(sizes_n)
        self.num_steps = self.client_steps[0]
        offsets = np.concatenate([[0], np.cumsum(sizes_n)[:-1]]).astype(np.int64)
        # rows[s, k, :sizes[s, k]]: flat row indices of client k's batch at step s (the rest is unused)
        self.rows = np.empty((self.num_steps, self.num_clients, b), dtype=np.int64)
        self.sizes = np.zeros((self.num_steps, self.num_clients), dtype=np.int64)
        for k, (n, spe, seed) in enumerate(zip(sizes_n, self.steps_per_epoch, seeds, strict=True)):
            gen = torch.Generator().manual_seed(seed)
            padded = np.full((epochs, spe * b), offsets[k], dtype=np.int64)
            for e in range(epochs):
                padded[e, :n] = torch.randperm(n, generator=gen).numpy() + offsets[k]
            self.rows[: epochs * spe, k] = padded.reshape(epochs * spe, b)
            per_epoch = np.full(spe, b, dtype=np.int64)
            per_epoch[-1] = n - (spe - 1) * b
            self.sizes[: epochs * spe, k] = np.tile(per_epoch, epochs)
        self.active = (self.sizes > 0).sum(axis=1)


class _StackedOptimizer:
    """``torch.optim``'s SGD or Adam update over stacked ``(K, ...)`` parameters, one state per client.

    :meth:`step` updates the first ``a`` clients only (the active prefix); the others' parameters and
    optimiser state stay untouched, as if their own optimiser had not stepped. Adam's step count is shared:
    every client steps from the first step on, until it drops out for good.
    """

    def __init__(self, params: list[torch.Tensor], config: TrainConfig) -> None:
        self.config = config
        self.state: dict[str, list[torch.Tensor]] = {"params": params}
        if config.optimizer == "adam":
            self.state["exp_avg"] = [torch.zeros_like(p) for p in params]
            self.state["exp_avg_sq"] = [torch.zeros_like(p) for p in params]
        self.adam_steps = [torch.tensor(0.0, dtype=torch.float32) for _ in params]
        self.momentum: list[torch.Tensor | None] = [None] * len(params)
        self._prefixes: dict[tuple[str, int], list[torch.Tensor]] = {}

    def prefix(self, name: str, a: int) -> list[torch.Tensor]:
        key = (name, a)
        if key not in self._prefixes:
            self._prefixes[key] = [t[:a] for t in self.state[name]]
        return self._prefixes[key]

    def step(self, a: int, grads: list[torch.Tensor]) -> None:
        """Apply one update to the first ``a`` clients, with ``grads`` of shapes ``(a, ...)``."""
        c = self.config
        if c.optimizer == "adam":
            adam(
                self.prefix("params", a),
                grads,
                self.prefix("exp_avg", a),
                self.prefix("exp_avg_sq", a),
                [],
                self.adam_steps,
                foreach=True,
                amsgrad=False,
                beta1=0.9,
                beta2=0.999,
                lr=c.lr,
                weight_decay=c.weight_decay,
                eps=1e-8,
                maximize=False,
            )
            return
        first = self.momentum[0] is None
        # at the first step every client is active and sgd() creates the momentum buffers in place
        buffers: list[torch.Tensor | None] = self.momentum if first else list(self.prefix("momentum", a))
        sgd(
            self.prefix("params", a),
            grads,
            buffers,
            foreach=True,
            weight_decay=c.weight_decay,
            momentum=c.momentum,
            lr=c.lr,
            dampening=0.0,
            nesterov=False,
            maximize=False,
        )
        if first and c.momentum != 0:
            self.state["momentum"] = [b for b in buffers if b is not None]


def _forward_backward(
    layers: list[_Layer], params: list[torch.Tensor], x: torch.Tensor
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per-client MSE reconstruction loss of one batch and its gradients, by hand (Linear + tanh only).

    Parameters
    ----------
    layers : list of _Layer
    params : list of Tensor
        Weight ``(m, out, in)`` and bias ``(m, 1, out)`` of each layer, interleaved.
    x : Tensor of shape (m, batch, n_features)
        One batch per client, all of the same size.

    Returns
    -------
    grads : list of Tensor
        Shaped like ``params``: the gradient of each client's ``nn.MSELoss()`` (mean over its batch).
    loss_sum : Tensor of shape (m,)
        Each client's sum of squared errors (``loss * batch * n_features``).
    """
    weights, biases = params[0::2], params[1::2]
    acts = [x]
    h = x
    for layer, w, bias in zip(layers, weights, biases, strict=True):
        h = torch.baddbmm(bias, h, w.transpose(1, 2))
        if layer.tanh:
            h = h.tanh_()
        acts.append(h)
    diff = h - x
    loss_sum = diff.square().sum(dim=(1, 2))
    # MSELoss(mean) backward: (2 / numel) * (out - x), numel = batch * n_features
    g = diff.mul_(2.0 / (x.shape[1] * x.shape[2]))
    if layers[-1].tanh:  # a final Tanh: back through it before the last Linear's gradients
        g = torch.ops.aten.tanh_backward(g, h)
    grads: list[torch.Tensor] = [g] * len(params)
    for i in range(len(layers) - 1, -1, -1):
        if i == 0:  # x^T g is much faster than g^T x when the data holds subnormal values (same sums)
            grads[0] = torch.bmm(x.transpose(1, 2), g).transpose(1, 2).contiguous()
        else:
            grads[2 * i] = torch.bmm(g.transpose(1, 2), acts[i])
        grads[2 * i + 1] = g.sum(dim=1, keepdim=True)
        if i > 0:
            g = torch.bmm(g, weights[i])
            if layers[i - 1].tanh:
                g = torch.ops.aten.tanh_backward(g, acts[i])
    return grads, loss_sum


def _train_group(
    layers: list[_Layer],
    num_tensors: int,
    weights: list[Weights],
    xs: list[NDArray[np.float32]],
    config: TrainConfig,
    seeds: list[int],
) -> list[tuple[Weights, float]]:
    """Train clients sharing one ``config`` in lock-step; return (weights, last-epoch loss) in input order."""
    sizes_n = [int(x.shape[0]) for x in xs]
    order = sorted(range(len(xs)), key=lambda k: -sizes_n[k])  # most steps first; ties keep input order
    plan = _StepPlan([sizes_n[k] for k in order], config, [seeds[k] for k in order])
    data = torch.from_numpy(np.concatenate([np.asarray(xs[k], dtype=np.float32) for k in order]))
    width = data.shape[1]

    def stack(index: int) -> torch.Tensor:
        return torch.from_numpy(np.stack([np.asarray(weights[k][index], dtype=np.float32) for k in order]))

    ws = [stack(layer.weight_index) for layer in layers]  # (K, out, in)
    bs = [stack(layer.bias_index).unsqueeze(1) for layer in layers]  # (K, 1, out)
    optimizer = _StackedOptimizer([t for pair in zip(ws, bs, strict=True) for t in pair], config)
    mu = config.proximal_mu
    # FedProx: the gradient of mu/2 ||w - w_0||^2 is mu (w - w_0), w_0 = each client's start weights
    anchors = [p.clone() for p in optimizer.state["params"]] if mu > 0 else []
    loss_sums = torch.zeros((plan.num_steps, plan.num_clients), dtype=torch.float32)
    with torch.no_grad():
        for s in range(plan.num_steps):
            a = int(plan.active[s])
            params = optimizer.prefix("params", a)
            sizes = plan.sizes[s, :a]
            if (sizes == sizes[0]).all():
                rows = torch.from_numpy(plan.rows[s, :a, : sizes[0]].reshape(-1))
                grads, loss_sum = _forward_backward(
                    layers, params, data.index_select(0, rows).view(a, -1, width)
                )
                loss_sums[s, :a] = loss_sum
            else:
                # some clients' batch is their epoch's last, partial one: one pass per batch size, so
                # every matrix product has the shapes of the sequential loop (no padding, same rounding)
                grads = [torch.empty_like(p) for p in params]
                for size in np.unique(sizes):
                    members = np.flatnonzero(sizes == size)
                    index = torch.from_numpy(members)
                    rows = torch.from_numpy(plan.rows[s, members, :size].reshape(-1))
                    sub, loss_sum = _forward_backward(
                        layers,
                        [p.index_select(0, index) for p in params],
                        data.index_select(0, rows).view(members.size, -1, width),
                    )
                    for full, part in zip(grads, sub, strict=True):
                        full.index_copy_(0, index, part)
                    loss_sums[s, index] = loss_sum
            if mu > 0:
                grads = [g + (p - w0[:a]) * mu for g, p, w0 in zip(grads, params, anchors, strict=True)]
            optimizer.step(a, grads)
    return _unstack(layers, num_tensors, ws, bs, order, plan, loss_sums, sizes_n, width)


def _unstack(
    layers: list[_Layer],
    num_tensors: int,
    ws: list[torch.Tensor],
    bs: list[torch.Tensor],
    order: list[int],
    plan: _StepPlan,
    loss_sums: torch.Tensor,
    sizes_n: list[int],
    num_features: int,
) -> list[tuple[Weights, float]]:
    """Split the stacked parameters per client and finish the last-epoch losses, in input order."""
    # the sequential loop adds float(batch mean loss) * batch rows in double, then divides by n
    sizes = plan.sizes
    numel = np.maximum(sizes * num_features, 1).astype(np.float32)
    batch_means = (loss_sums.numpy() / numel).astype(np.float64)
    results: list[tuple[Weights, float] | None] = [None] * len(order)
    for pos, k in enumerate(order):
        out: list[NDArray[np.float32] | None] = [None] * num_tensors
        for layer, w, bias in zip(layers, ws, bs, strict=True):
            out[layer.weight_index] = w[pos].numpy().copy()
            out[layer.bias_index] = bias[pos, 0].numpy().copy()
        spe = plan.steps_per_epoch[pos]
        last = slice(plan.client_steps[pos] - spe, plan.client_steps[pos])
        total = 0.0
        for mean, rows in zip(batch_means[last, pos], sizes[last, pos], strict=True):
            total += float(mean) * int(rows)
        results[k] = ([w for w in out if w is not None], total / sizes_n[k])
    return [r for r in results if r is not None]


class BatchedAutoencoderExecutor:
    """Runs one round's :class:`AutoencoderClient` s at once with :func:`train_autoencoders_batched`.

    Each client's :meth:`AutoencoderClient.fit_plan` says what its ``fit`` would do (rows, hyper-parameters,
    seeds, the retraining pass); the executor runs every client's first phase in one batched call, then the
    second phase of the clients that retrain, and replies with :meth:`FitPlan.update`. Other clients (and
    autoencoders that are not a Linear/Tanh chain) fall back to their own ``fit``. Replies equal
    ``SequentialExecutor``'s up to float summation order (bit-identical when all clients have the same row
    count). Pass it to ``fediot.sim.run_rounds(..., executor=BatchedAutoencoderExecutor())``.
    """

    def __init__(self) -> None:
        self._templates: dict[Callable[[], nn.Module], nn.Module | None] = {}

    def _template(self, client: AutoencoderClient) -> nn.Module | None:
        """Return a module of ``client``'s architecture, or None if batched training cannot train it."""
        if client.model_factory not in self._templates:
            module = client.model_factory()
            try:
                _linear_tanh_chain(module)
            except TypeError:
                self._templates[client.model_factory] = None
            else:
                self._templates[client.model_factory] = module
        return self._templates[client.model_factory]

    def fit_round(
        self, clients: Sequence[Client], weights: Weights, config: Config, *, fail_fast: bool
    ) -> list[ClientUpdate | Exception]:
        """Return, per client in order, its reply to ``fit(weights, config)`` or the exception it raised."""
        replies: list[ClientUpdate | Exception | None] = [None] * len(clients)
        plans: dict[int, FitPlan] = {}
        template: nn.Module | None = None
        for i, client in enumerate(clients):
            if not isinstance(client, AutoencoderClient):
                continue
            module = self._template(client) if template is None else template
            if module is None:
                continue
            template = module
            try:
                plans[i] = client.fit_plan(config)
            except Exception as exc:
                if fail_fast:
                    raise
                replies[i] = exc
        if template is not None and plans:
            try:
                for i, reply in _run_plans(template, weights, plans).items():
                    replies[i] = reply
            except Exception as exc:
                if fail_fast:
                    raise
                for i in plans:
                    replies[i] = exc
        for i, client in enumerate(clients):
            if replies[i] is None:
                try:
                    replies[i] = client.fit(weights, config)
                except Exception as exc:
                    if fail_fast:
                        raise
                    replies[i] = exc
        return [r for r in replies if r is not None]


def _run_plans(module: nn.Module, weights: Weights, plans: dict[int, FitPlan]) -> dict[int, ClientUpdate]:
    """Run every plan's phases from ``weights``, phase by phase, each phase batched over the clients."""
    current: dict[int, Weights] = dict.fromkeys(plans, weights)
    losses: dict[int, float] = {}
    for j in range(max(len(p.phases) for p in plans.values())):
        due = [i for i, p in plans.items() if len(p.phases) > j]
        phases = [plans[i].phases[j] for i in due]
        out = train_autoencoders_batched(
            module,
            [current[i] for i in due],
            [p.x for p in phases],
            [p.config for p in phases],
            [p.seed for p in phases],
        )
        for i, (trained, loss) in zip(due, out, strict=True):
            current[i], losses[i] = trained, loss
    return {i: plan.update(current[i], losses[i]) for i, plan in plans.items()}
