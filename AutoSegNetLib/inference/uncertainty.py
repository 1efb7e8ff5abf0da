"""Per-voxel uncertainty from probabilities: normalised entropy, and disagreement between ensemble members.

Both maps are in ``[0, 1]``:

- ``entropy``: the entropy of the (averaged) probabilities divided by its maximum, ``log K`` for ``K``
  softmax classes; for sigmoid regions the mean over regions of the binary entropy divided by ``log 2``.
- ``disagreement``: the mutual information between the prediction and the ensemble member (folds x
  mirrored passes), ``H(mean p) - mean H(p_m)``, with the same normalisation. It is zero where all members
  agree, even where they agree on an uncertain answer, so it shows model (epistemic) uncertainty only.
"""

from __future__ import annotations

import math

import torch

UNCERTAINTY_KINDS = ("entropy", "disagreement")

_EPS = 1e-12


def normalised_entropy(probabilities: torch.Tensor, regions: bool, channel_dim: int = 0) -> torch.Tensor:
    """Entropy in ``[0, 1]`` of probabilities ``(K, *S)`` (channels along ``channel_dim``) -> ``(*S)`` float32.

    Softmax classes (``regions=False``): ``-sum_k p_k log p_k / log K``. Sigmoid regions: the mean over
    regions of ``-(p log p + (1 - p) log(1 - p)) / log 2``. A single softmax class has entropy 0.
    """
    p = probabilities.float()
    k = p.shape[channel_dim]
    if regions:
        q = 1.0 - p
        h = -(p * torch.log(p.clamp_min(_EPS)) + q * torch.log(q.clamp_min(_EPS)))
        return (h.sum(channel_dim) / (k * math.log(2.0))).clamp_(0.0, 1.0)
    if k < 2:
        return torch.zeros_like(p.select(channel_dim, 0))
    h = -(p * torch.log(p.clamp_min(_EPS))).sum(channel_dim)
    return (h / math.log(k)).clamp_(0.0, 1.0)


def disagreement(entropy_of_average: torch.Tensor, average_member_entropy: torch.Tensor) -> torch.Tensor:
    """Mutual information ``H(mean p) - mean H(p_m)`` from two normalised-entropy maps, clipped to ``[0, 1]``."""
    return (entropy_of_average - average_member_entropy).clamp_(0.0, 1.0)
