"""A multilayer perceptron classifier (the seed paper's 33-8-8-20 network by default)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["MLP", "MLPConfig"]


@dataclass(frozen=True, slots=True)
class MLPConfig:
    """Shape of an :class:`MLP`: ``num_features`` inputs, ``hidden`` ReLU widths, ``num_classes`` logits."""

    num_features: int
    hidden: tuple[int, ...] = (8, 8)
    num_classes: int = 20

    def __post_init__(self) -> None:
        if self.num_features < 1 or self.num_classes < 2 or any(h < 1 for h in self.hidden):
            raise ValueError(f"invalid MLP shape: {self}")


class MLP(nn.Module):
    """Fully connected classifier returning logits of shape ``(n_samples, num_classes)``.

    Examples
    --------
    >>> import torch
    >>> net = MLP(MLPConfig(num_features=33, hidden=(8, 8), num_classes=20))
    >>> tuple(net(torch.zeros(4, 33)).shape)
    (4, 20)
    """

    def __init__(self, config: MLPConfig) -> None:
        super().__init__()
        self.config = config
        widths: Sequence[int] = (config.num_features, *config.hidden)
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], config.num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits for ``x`` of shape ``(n_samples, num_features)``."""
        out: torch.Tensor = self.net(x)
        return out
