"""What a resolution policy costs per split (visual tokens, compute), and what it cannot encode.

Decisions (which rows of a mixed run are low) are drawn with the same functions, seeds and quotas
as the loader and templates, over the rows the loader keeps, so the counts are the run's, not an
estimate. `family_refusal` / `padded_size` are the one rule for images a model family cannot encode,
used by the loader (`data.decode`) and here alike. The sizes come from `data.sizes`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np

from ..errors import PolicyError
from .families import Family, Size
from .mixing import MixSlot, QuotaBook, sample_id
from .policy import ResolutionPolicy

# Padding search: the short side grows until the family's own rounding accepts the image.
_PAD_TRIES = 2000


def family_refusal(size: Size, family: Optional[Family], policy: Optional[ResolutionPolicy]) -> Optional[str]:
    """Why the run's model family would refuse an image of `size`, or None. Without a policy the
    processor sees the image as stored; with one, each size the policy may plan for it (native and
    low for a mixed run, whose draw can change per epoch)."""
    if family is None:
        return None
    if policy is None:
        return family.check(size)
    for decision in (('native', 'low') if policy.mode == 'mixed' else (policy.mode,)):
        try:
            policy.plan(size[0], size[1], decision, family)
        except PolicyError as e:
            return str(e)
    return None


def padded_size(size: Size, family: Family, policy: Optional[ResolutionPolicy]) -> Optional[Size]:
    """The smallest padding of the short side that the family accepts (None: none found)."""
    w, h = size
    target = math.ceil(max(w, h) / family.max_aspect_ratio) if family.max_aspect_ratio else min(w, h)
    for _ in range(_PAD_TRIES):
        candidate = (w, max(h, target)) if w >= h else (max(w, target), h)
        if family_refusal(candidate, family, policy) is None:
            return candidate
        target = max(target + 1, int(target * 1.01))
    return None


@dataclass
class SplitCost:
    dataset: str
    split: str
    images: int
    low_images: int
    mean_tokens: float
    p95_tokens: float
    max_tokens: int
    total_tokens: int
    native_total_tokens: int
    # Rows the run would refuse (unreadable images, and under this policy, sizes the family cannot
    # encode): (source row index, reason), not counted above.
    refused: list = field(default_factory=list)
    padded: int = 0

    @property
    def cost_vs_native(self) -> float:
        return self.total_tokens / self.native_total_tokens if self.native_total_tokens else float('nan')

    def as_dict(self) -> dict:
        out = {**asdict(self), 'cost_vs_native': round(self.cost_vs_native, 4)}
        out['refused'] = [{'row': i, 'reason': r} for i, r in self.refused]
        return out


@dataclass
class SplitSizes:
    """The images of a split as the loader decodes them: sizes of the rows it keeps, in row order,
    their source row indices, and the rows it refuses whatever the policy, with the reason."""
    dataset: str
    modality: str
    split: str
    sizes: list[Size]
    indices: Optional[list[int]] = None          # None: rows 0..n-1
    refused: list = field(default_factory=list)  # (row index, reason)

    @property
    def rows(self) -> list[int]:
        return list(range(len(self.sizes))) if self.indices is None else self.indices


def split_cost(name: str, split: str, sizes: list[Size], family: Family, policy: ResolutionPolicy,
               slots: Optional[list[MixSlot]], indices: Optional[list[int]] = None, padded: int = 0) -> SplitCost:
    tokens, native_tokens, low = [], [], 0
    for i, (w, h) in zip(indices if indices is not None else range(len(sizes)), sizes):
        k = len(tokens)
        decision = policy.decide(sample_id(name, split, i), slots[k] if slots else None)
        low += decision == 'low'
        tokens.append(policy.plan(w, h, decision, family).tokens)
        native_tokens.append(policy.plan(w, h, 'native', family).tokens)
    arr = np.asarray(tokens, dtype=np.int64) if tokens else np.zeros(1, dtype=np.int64)
    return SplitCost(name, split, len(sizes), low, float(arr.mean()), float(np.percentile(arr, 95)),
                     int(arr.max()), int(arr.sum()) if tokens else 0, int(sum(native_tokens)), padded=padded)


def policy_costs(splits: list[SplitSizes], family: Family, policy: ResolutionPolicy,
                 pad: bool = False) -> list[SplitCost]:
    """Cost of each split under `policy`, drawing mixed decisions as a run loading them in this order
    draws them: over the rows the loader keeps (refused rows are listed, not counted; with `pad`, an
    image the family cannot encode is counted at its padded size, as the loader pads it)."""
    book = QuotaBook()
    out = []
    for sp in splits:
        sizes, kept, refused, padded = [], [], list(sp.refused), 0
        for i, size in zip(sp.rows, sp.sizes):
            reason = family_refusal(size, family, policy)
            if reason is not None and pad:
                target = padded_size(size, family, policy)
                if target is not None:
                    size, reason, padded = target, None, padded + 1
            if reason is not None:
                refused.append((i, f'{sp.dataset} split={sp.split} row={i}: {reason}'))
                continue
            sizes.append(size)
            kept.append(i)
        slots = policy.slots(sp.dataset, sp.modality, sp.split, len(kept), book, indices=kept)
        cost = split_cost(sp.dataset, sp.split, sizes, family, policy, slots, kept, padded)
        cost.refused = sorted(refused)
        out.append(cost)
    return out


