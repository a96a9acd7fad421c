"""Deterministic, balanced choice of which samples a mixed-resolution run sees at low resolution.

Each loaded split gets a seeded permutation of its rows (a row's position depends only on the
seed and its id) and a quota `k` of low-resolution rows. A row is low in epoch `e` iff
`(pos + e * k) mod n < k`: exactly `k` rows are low in every epoch, and a per-epoch re-draw
rotates which ones. Quotas are balanced within a group (the modality, or the dataset): when
several datasets of one group load in the same process, the quotas are rounded cumulatively,
so the group as a whole gets exactly round(p * N) low rows, not one rounding per dataset.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Optional


def sample_id(dataset: str, split: str, index: int) -> str:
    """A row's identity: what the draw hashes and what predictions are joined on."""
    return f'{dataset}/{split}/{index}'


def unit_hash(*parts) -> float:
    """A uniform number in [0, 1) from the parts, stable across processes and Python versions."""
    digest = hashlib.sha256('\x1f'.join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], 'big') / 2 ** 64


def positions(ids: list[str], seed: int) -> list[int]:
    """Seeded permutation: position of each id in the order of its hash."""
    order = sorted(range(len(ids)), key=lambda i: (unit_hash(seed, 'pos', ids[i]), ids[i]))
    pos = [0] * len(ids)
    for rank, i in enumerate(order):
        pos[i] = rank
    return pos


@dataclass(frozen=True)
class MixSlot:
    pos: int
    n: int
    k: int

    def is_low(self, epoch: int = 0) -> bool:
        return (self.pos + epoch * self.k) % self.n < self.k if self.n else False


class QuotaBook:
    """Per-process cumulative rounding of low-resolution quotas within each group."""

    def __init__(self) -> None:
        self._groups: dict[tuple, dict[str, tuple[int, int]]] = {}

    def quota(self, group: tuple, member: str, n: int, p: float) -> int:
        members = self._groups.setdefault(group, {})
        if member in members and members[member][0] == n:
            return members[member][1]  # the same split loaded again: same quota
        # Booked again with another size (its bad rows dropped after loading): replace its booking.
        members.pop(member, None)
        total_n = sum(m[0] for m in members.values())
        total_k = sum(m[1] for m in members.values())
        k = math.floor(p * (total_n + n) + 0.5) - total_k
        k = min(max(k, 0), n)
        members[member] = (n, k)
        return k


    def clear(self) -> None:
        self._groups.clear()


# The process's book: every split a run loads (train and validation datasets alike) books here.
QUOTAS = QuotaBook()


def mix_slots(ids: list[str], *, seed: int, p: float, group: tuple, member: str,
              book: Optional[QuotaBook] = None) -> list[MixSlot]:
    n = len(ids)
    k = (book or QUOTAS).quota(group, member, n, p)
    return [MixSlot(pos, n, k) for pos in positions(ids, seed)]


def iid_is_low(sample_id: str, *, seed: int, p: float, epoch: int = 0) -> bool:
    """Unbalanced draw (`balance: none`): each sample low with probability p, independently."""
    return unit_hash(seed, 'iid', sample_id, epoch) < p
