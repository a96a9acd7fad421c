"""What a resolution policy costs per split: visual tokens and compute, from image sizes only.

Decisions (which rows of a mixed run are low) are drawn with the same functions, seeds and quotas
as the loader and templates, so the counts are the run's, not an estimate. The sizes come from
image headers (`data.sizes`), so 10^5 images take seconds.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

from .families import Family
from .mixing import MixSlot, QuotaBook, sample_id
from .policy import ResolutionPolicy


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

    @property
    def cost_vs_native(self) -> float:
        return self.total_tokens / self.native_total_tokens if self.native_total_tokens else float('nan')

    def as_dict(self) -> dict:
        return {**asdict(self), 'cost_vs_native': round(self.cost_vs_native, 4)}


@dataclass
class SplitSizes:
    dataset: str
    modality: str
    split: str
    sizes: list[tuple[int, int]]


def split_cost(name: str, split: str, sizes: list[tuple[int, int]], family: Family,
               policy: ResolutionPolicy, slots: Optional[list[MixSlot]]) -> SplitCost:
    tokens, native_tokens, low = [], [], 0
    for i, (w, h) in enumerate(sizes):
        decision = policy.decide(sample_id(name, split, i), slots[i] if slots else None)
        low += decision == 'low'
        tokens.append(policy.plan(w, h, decision, family).tokens)
        native_tokens.append(policy.plan(w, h, 'native', family).tokens)
    arr = np.asarray(tokens, dtype=np.int64) if tokens else np.zeros(1, dtype=np.int64)
    return SplitCost(name, split, len(sizes), low, float(arr.mean()), float(np.percentile(arr, 95)),
                     int(arr.max()), int(arr.sum()) if tokens else 0, int(sum(native_tokens)))


def policy_costs(splits: list[SplitSizes], family: Family, policy: ResolutionPolicy) -> list[SplitCost]:
    """Cost of each split under `policy`, drawing mixed decisions as a run loading them in this order."""
    book = QuotaBook()
    return [split_cost(sp.dataset, sp.split, sp.sizes, family, policy,
                       policy.slots(sp.dataset, sp.modality, sp.split, len(sp.sizes), book)) for sp in splits]


