"""Portable FID statistics files: ``.npz`` with ``mu`` and ``sigma``, as pytorch-fid and clean-fid write them.

:func:`save_statistics` writes the mean (``mu``, shape (d,)) and covariance (``sigma``, (d, d)) in float64 with
``numpy.savez_compressed``, plus ``n`` (the image count) and ``protocol`` (JSON text: extractor, full weights sha256,
decoding, resize, subset seed, ...). pytorch-fid's ``--save-stats`` files and clean-fid's reference statistics
have the same two arrays, so any ``.npz`` with ``mu`` and ``sigma`` loads here; one without ``protocol`` cannot be
checked against the extractor in use, which the evaluation then notes. Files are read with
``allow_pickle=False``: nothing in them is executed.

Not here: computing statistics (``evaluate.compute_statistics``) or the FID itself (``statistics.py``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["FIDStatistics", "is_statistics_file", "load_statistics", "save_statistics"]


@dataclass(frozen=True)
class FIDStatistics:
    """Mean and covariance of one image set's features, with how they were obtained.

    Example:
        >>> import tempfile, numpy as np
        >>> stats = FIDStatistics(mu=np.zeros(2), sigma=np.eye(2), count=10, protocol={"extractor": "x"})
        >>> path = save_statistics(tempfile.mkdtemp() + "/s.npz", stats)
        >>> again = load_statistics(path)
        >>> again.count, again.protocol["extractor"], again.sigma.tolist()
        (10, 'x', [[1.0, 0.0], [0.0, 1.0]])
    """

    mu: np.ndarray  # (d,) float64
    sigma: np.ndarray  # (d, d) float64
    count: int | None = None  # images behind the statistics; unknown for files from other tools
    protocol: dict[str, Any] | None = None  # the protocol record; None for files from other tools
    path: str | None = None  # where it was read from

    @property
    def dim(self) -> int:
        """Feature dimension d."""
        return int(self.mu.shape[0])

    def tensors(self) -> tuple[Tensor, Tensor]:
        """``(mu, sigma)`` as float64 tensors."""
        return torch.from_numpy(np.asarray(self.mu, dtype=np.float64)), torch.from_numpy(np.asarray(self.sigma, dtype=np.float64))


def is_statistics_file(spec: Any) -> bool:
    """Whether ``spec`` names an existing ``.npz`` file (what :func:`load_statistics` reads)."""
    return isinstance(spec, (str, os.PathLike)) and str(spec).lower().endswith(".npz") and Path(spec).is_file()


def save_statistics(path: str | os.PathLike, statistics: FIDStatistics) -> Path:
    """Write ``statistics`` to ``path`` (``.npz``; see the module docstring). Returns the path written."""
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise ValueError(f"Statistics files end in .npz (what pytorch-fid and clean-fid read), got {str(path)!r}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {
        "mu": np.asarray(statistics.mu, dtype=np.float64),
        "sigma": np.asarray(statistics.sigma, dtype=np.float64),
    }
    if statistics.count is not None:
        arrays["n"] = np.asarray(statistics.count, dtype=np.int64)
    if statistics.protocol is not None:
        arrays["protocol"] = np.asarray(json.dumps(statistics.protocol, sort_keys=True))  # a 0-d unicode array
    # savez_compressed appends ".npz" to names without it; write to a temporary name then rename, so a reader
    # never sees half a file.
    temporary = path.with_name(f".{path.name}.tmp.npz")
    np.savez_compressed(temporary, **arrays)
    os.replace(temporary, path)
    return path


def load_statistics(path: str | os.PathLike) -> FIDStatistics:
    """Read a statistics file written by :func:`save_statistics`, pytorch-fid or clean-fid.

    Raises:
        ValueError: The file is not an ``.npz`` with ``mu`` (d,) and ``sigma`` (d, d).
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            contents = {key: data[key] for key in data.files}
    except (OSError, ValueError) as error:
        raise ValueError(f"Could not read {str(path)!r} as an .npz statistics file ({error}).") from error
    if "mu" not in contents or "sigma" not in contents:
        raise ValueError(
            f"{str(path)!r} has arrays {sorted(contents)}; a statistics file needs 'mu' and 'sigma' (the layout "
            f"of pytorch-fid, clean-fid and `lightning-gen fid-stats`)."
        )
    mu, sigma = np.asarray(contents["mu"], dtype=np.float64), np.asarray(contents["sigma"], dtype=np.float64)
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"{str(path)!r}: mu must be (d,) and sigma (d, d), got {mu.shape} and {sigma.shape}.")
    count = int(contents["n"]) if "n" in contents else None
    protocol = json.loads(str(contents["protocol"])) if "protocol" in contents else None
    return FIDStatistics(mu=mu, sigma=sigma, count=count, protocol=protocol, path=str(path))
