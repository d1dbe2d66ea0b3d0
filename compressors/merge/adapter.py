"""The trained adapter on merged vectors, and its artefact folder."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ragzip.core.artefacts import read_artefact_config, read_tensors, write_artefact
from ragzip.core.errors import ConfigError, ModelError
from ragzip.generators.target import SoftTarget

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights" / "merge"
"""Folder of the shipped adapter (``config.json``, ``model.safetensors``, ``training.json``)."""
FORMAT = "ragzip-merge-adapter"
FORMAT_VERSION = 1


# ------------------------------------------------------------------------------------ adapter


class Adapter(nn.Module):
    """Residual low-rank map on merged vectors: ``v + up(down(v / scale)) · scale + bias``.

    ``up`` starts at zero, so an untrained adapter is the identity. Inputs are divided by
    ``scale`` (the typical norm of an input embedding over ``sqrt(dim)``) so the low-rank path
    sees unit-variance entries.

    Args:
        dim: Width of the generator's input embeddings.
        rank: Rank of the correction.
        scale: Typical per-entry scale of the input embeddings.
    """

    def __init__(self, dim: int, rank: int = 64, scale: float = 1.0) -> None:
        super().__init__()
        if rank < 1 or dim < 1:
            msg = f"adapter needs dim >= 1 and rank >= 1, got dim={dim}, rank={rank}"
            raise ConfigError(msg)
        self.dim = dim
        self.rank = rank
        self.scale = float(scale)
        self.down = nn.Linear(dim, rank, bias=False)
        self.up = nn.Linear(rank, dim, bias=False)
        self.bias = nn.Parameter(torch.zeros(dim))
        nn.init.zeros_(self.up.weight)
        self.text_share: float | None = None
        """The compressor's ``text_share`` while this adapter was trained, as its folder
        records it (0, everything merged, when it records none); ``None`` for an adapter not
        read from a folder."""

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        """Map ``(n, dim)`` merged vectors to ``(n, dim)``."""
        x = vectors / self.scale
        return vectors + (self.up(torch.tanh(self.down(x))) + self.bias) * self.scale

    def save(
        self, folder: Path, *, target: SoftTarget, extra: dict[str, Any] | None = None
    ) -> None:
        """Write ``config.json`` (naming the generator ``target``) and ``model.safetensors``
        (float32) to ``folder``."""
        if self.dim != target.hidden_size:
            msg = f"the adapter maps {self.dim}-d vectors, {target.name} reads {target.hidden_size}"
            raise ConfigError(msg)
        config = {
            "dim": self.dim,
            "rank": self.rank,
            "scale": self.scale,
            "target": target.to_dict(),
            **(extra or {}),
        }
        state = {k: v.float() for k, v in self.state_dict().items()}
        write_artefact(folder, kind=FORMAT, version=FORMAT_VERSION, tensors=state, config=config)

    @classmethod
    def load(cls, folder: Path, target: SoftTarget | None = None) -> Adapter:
        """Read an adapter written by :meth:`save` (for ``target``, when given).

        Raises:
            ModelError: Missing files, another format, weights that do not fit, or an adapter
                trained for another generator than ``target``.
        """
        config = read_artefact_config(
            folder, kind=FORMAT, version=FORMAT_VERSION, what="merge adapter"
        )
        if target is not None:
            target.check(config, what="merge adapter", folder=folder)
        state = read_tensors(folder)
        try:
            adapter = cls(int(config["dim"]), int(config["rank"]), float(config["scale"]))
            adapter.load_state_dict(state, strict=True)
            adapter.text_share = float(config.get("text_share", 0.0))
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            msg = f"the adapter weights in {folder} do not fit its config: {exc}"
            raise ModelError(msg) from exc
        return adapter.eval()


@lru_cache(maxsize=4)
def _load_adapter(folder: str, target: SoftTarget | None) -> Adapter:
    return Adapter.load(Path(folder), target)
