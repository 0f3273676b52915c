"""N-BaIoT's deep autoencoder: hidden widths 75%, 50%, 33%, 25% of the input, mirrored."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Autoencoder", "AutoencoderConfig"]


@dataclass(frozen=True, slots=True)
class AutoencoderConfig:
    """Shape of an :class:`Autoencoder`: ``num_features`` inputs and outputs, encoder widths ``ratios``.

    The ratios are fractions of ``num_features`` (rounded half up); the decoder mirrors them. N-BaIoT:
    (0.75, 0.5, 0.33, 0.25), i.e. 115-86-58-38-29-38-58-86-115:

    >>> AutoencoderConfig(num_features=115).widths
    (115, 86, 58, 38, 29)
    """

    num_features: int
    ratios: tuple[float, ...] = (0.75, 0.5, 0.33, 0.25)

    def __post_init__(self) -> None:
        if self.num_features < 2:
            raise ValueError(f"num_features must be >= 2, got {self.num_features}")
        if not self.ratios or any(not 0.0 < r < 1.0 for r in self.ratios):
            raise ValueError(f"ratios must be in (0, 1), got {self.ratios}")

    @property
    def widths(self) -> tuple[int, ...]:
        """Layer widths of the encoder, input first."""
        return (self.num_features, *(max(1, math.floor(r * self.num_features + 0.5)) for r in self.ratios))


class Autoencoder(nn.Module):
    """Symmetric tanh autoencoder; ``forward`` returns the reconstruction of ``x``.

    Examples
    --------
    >>> import torch
    >>> ae = Autoencoder(AutoencoderConfig(num_features=10))
    >>> tuple(ae(torch.zeros(3, 10)).shape)
    (3, 10)
    """

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        widths = config.widths
        enc: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            enc += [nn.Linear(a, b), nn.Tanh()]
        rev = widths[::-1]
        dec: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(rev[:-1], rev[1:], strict=True)):
            dec.append(nn.Linear(a, b))
            if i < len(rev) - 2:
                dec.append(nn.Tanh())
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct ``x`` of shape ``(n_samples, num_features)``."""
        out: torch.Tensor = self.decoder(self.encoder(x))
        return out
