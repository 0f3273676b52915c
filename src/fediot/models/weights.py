"""Moving parameters between torch modules and the ``Weights`` lists that cross the network."""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

__all__ = ["Weights", "get_weights", "init_module", "set_weights"]

Weights: TypeAlias = list[NDArray[np.float32]]
"""A model's parameters as a list of float32 arrays, in the module's ``state_dict`` order."""


def get_weights(module: nn.Module) -> Weights:
    """Return copies of ``module``'s parameters and buffers as float32 arrays, in ``state_dict`` order."""
    return [t.detach().cpu().numpy().astype(np.float32, copy=True) for t in module.state_dict().values()]


def set_weights(module: nn.Module, weights: Weights) -> None:
    """Load ``weights`` (as returned by :func:`get_weights`) into ``module`` in place.

    Raises
    ------
    ValueError
        If the number of arrays or any shape differs from the module's.
    """
    state = module.state_dict()
    if len(weights) != len(state):
        raise ValueError(f"expected {len(state)} weight arrays, got {len(weights)}")
    new_state = {}
    for (name, old), w in zip(state.items(), weights, strict=True):
        if tuple(old.shape) != tuple(w.shape):
            raise ValueError(f"weight {name!r}: expected shape {tuple(old.shape)}, got {tuple(w.shape)}")
        new_state[name] = torch.as_tensor(np.asarray(w), dtype=old.dtype)
    module.load_state_dict(new_state)


def init_module(module: nn.Module, seed: int) -> nn.Module:
    """Re-initialise every ``nn.Linear`` in ``module`` from ``seed`` alone (no global RNG is touched).

    Uses PyTorch's default ``Linear`` scheme (Kaiming-uniform weights with ``a = sqrt(5)``, uniform bias
    in ``+-1/sqrt(fan_in)``), drawn from a private ``torch.Generator``.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Linear):
                bound = 1.0 / float(np.sqrt(m.in_features))
                # kaiming_uniform_(a=sqrt(5)) reduces to U(-1/sqrt(fan_in), 1/sqrt(fan_in))
                m.weight.uniform_(-bound, bound, generator=gen)
                if m.bias is not None:
                    m.bias.uniform_(-bound, bound, generator=gen)
    return module
