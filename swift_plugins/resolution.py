"""The resolution policy: which image each sample's model sees (native, low or mixed).

Configured by environment variables, so a recipe's `ENV:` section or a shell sets it for
`swift sft` and `swift infer` alike (ms-swift rejects flags it does not know):

    MEDRES_RESOLUTION        native | low | mixed   (unset: medres leaves images to ms-swift)
    MEDRES_LOW_PIXELS        low budget in pixels        (default 1003520 = 1280*28*28)
    MEDRES_LOW_SCALE         low as a per-side scale factor instead, e.g. 0.5
    MEDRES_NATIVE_MAX_PIXELS safety cap for native       (default 12000000)
    MEDRES_MIX_RATIO         fraction at low for mixed   (default 0.5)
    MEDRES_MIX_SEED          seed of the mixed draw      (default 42)
    MEDRES_MIX_BALANCE       modality | dataset | none   (default modality)
    MEDRES_MIX_REDRAW        1: re-draw each epoch (needs `--callbacks medres_epoch`)
    MEDRES_FILTER            lanczos | bicubic | bilinear | box | nearest (default lanczos)
    MEDRES_UPSAMPLE_FROM_LOW 1: low images are brought back up to native size (Figure 5 ablation)
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Mapping, Optional

from PIL import Image

from .families import Family, Size, scale_to_budget
from .mixing import BALANCES, MixSlot, QuotaBook, iid_is_low, mix_slots, sample_id

MODES = ('native', 'low', 'mixed')
FILTERS = {
    'lanczos': Image.Resampling.LANCZOS,
    'bicubic': Image.Resampling.BICUBIC,
    'bilinear': Image.Resampling.BILINEAR,
    'box': Image.Resampling.BOX,
    'nearest': Image.Resampling.NEAREST,
}
PAPER_LOW_PIXELS = 1280 * 28 * 28
PAPER_NATIVE_MAX_PIXELS = 12_000_000

_ENV = {
    'mode': 'MEDRES_RESOLUTION', 'low_pixels': 'MEDRES_LOW_PIXELS', 'low_scale': 'MEDRES_LOW_SCALE',
    'native_max_pixels': 'MEDRES_NATIVE_MAX_PIXELS', 'mix_ratio': 'MEDRES_MIX_RATIO', 'seed': 'MEDRES_MIX_SEED',
    'balance': 'MEDRES_MIX_BALANCE', 'redraw': 'MEDRES_MIX_REDRAW', 'filter': 'MEDRES_FILTER',
    'upsample_from_low': 'MEDRES_UPSAMPLE_FROM_LOW',
}
_TRUE = {'1', 'true', 'yes', 'on'}


class PolicyError(ValueError):
    pass


@dataclass(frozen=True)
class Plan:
    """What the policy did to one image."""
    decision: str                      # 'native' | 'low'
    source: Size
    size: Size                         # what the model's processor receives (and keeps)
    tokens: int
    via: Optional[Size] = None         # the low-resolution size an upsampled image went through


@dataclass(frozen=True)
class ResolutionPolicy:
    mode: str
    low_pixels: int = PAPER_LOW_PIXELS
    low_scale: Optional[float] = None
    native_max_pixels: int = PAPER_NATIVE_MAX_PIXELS
    mix_ratio: float = 0.5
    seed: int = 42
    balance: str = 'modality'
    redraw: bool = False
    filter: str = 'lanczos'
    upsample_from_low: bool = False

    def __post_init__(self):
        checks = [
            (self.mode in MODES, f'{_ENV["mode"]} must be one of {MODES}, got {self.mode!r}'),
            (self.low_pixels > 0, f'{_ENV["low_pixels"]} must be positive'),
            (self.low_scale is None or 0 < self.low_scale <= 1, f'{_ENV["low_scale"]} must be in (0, 1]'),
            (self.native_max_pixels > 0, f'{_ENV["native_max_pixels"]} must be positive'),
            (0 <= self.mix_ratio <= 1, f'{_ENV["mix_ratio"]} must be in [0, 1]'),
            (self.balance in BALANCES, f'{_ENV["balance"]} must be one of {BALANCES}'),
            (self.filter in FILTERS, f'{_ENV["filter"]} must be one of {sorted(FILTERS)}'),
        ]
        for ok, msg in checks:
            if not ok:
                raise PolicyError(msg)

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> Optional['ResolutionPolicy']:
        env = os.environ if env is None else env
        mode = env.get(_ENV['mode'], '').strip().lower()
        if mode in ('', 'off', 'none'):
            return None
        kwargs: dict = {'mode': mode}
        casts = {'low_pixels': int, 'low_scale': float, 'native_max_pixels': int, 'mix_ratio': float,
                 'seed': int, 'balance': str, 'filter': str,
                 'redraw': lambda v: v.strip().lower() in _TRUE,
                 'upsample_from_low': lambda v: v.strip().lower() in _TRUE}
        for field, cast in casts.items():
            raw = env.get(_ENV[field])
            if raw not in (None, ''):
                try:
                    kwargs[field] = cast(raw)
                except ValueError:
                    raise PolicyError(f'{_ENV[field]}={raw!r} is not a valid {field}') from None
        return cls(**kwargs)

    def to_env(self) -> dict[str, str]:
        out = {}
        for field, value in asdict(self).items():
            if value is None:
                continue
            out[_ENV[field]] = ('1' if value else '0') if isinstance(value, bool) else str(value)
        return out

    def describe(self) -> str:
        low = f'scale {self.low_scale}' if self.low_scale else f'{self.low_pixels:,} px'
        mix = (f', {self.mix_ratio:.0%} low, seed {self.seed}, balance {self.balance}'
               f'{", re-drawn per epoch" if self.redraw else ""}') if self.mode == 'mixed' else ''
        up = ', low upsampled back to native' if self.upsample_from_low else ''
        return f'{self.mode} (low {low}, native cap {self.native_max_pixels:,} px, {self.filter}{mix}{up})'

    # --- decisions -------------------------------------------------------------------------

    def decide(self, sample_id: Optional[str], slot: Optional[MixSlot], epoch: int = 0) -> str:
        if self.mode != 'mixed':
            return self.mode
        if slot is not None and self.balance != 'none':
            return 'low' if slot.is_low(epoch) else 'native'
        if sample_id is None:
            raise PolicyError('mixed resolution needs a sample id to draw from: use a medres registry '
                              'dataset (rows carry chat_template_kwargs.medres.id)')
        return 'low' if iid_is_low(sample_id, seed=self.seed, p=self.mix_ratio, epoch=epoch) else 'native'

    def slots(self, dataset: str, modality: str, split: str, n: int,
              book: Optional[QuotaBook] = None) -> Optional[list[MixSlot]]:
        """Balanced mixed-resolution slots for the `n` rows of a split (None unless mixed + balanced)."""
        if self.mode != 'mixed' or self.balance == 'none':
            return None
        group_key = modality if self.balance == 'modality' else dataset
        ids = [sample_id(dataset, split, i) for i in range(n)]
        return mix_slots(ids, seed=self.seed, p=self.mix_ratio,
                         group=(self.balance, group_key, split, self.seed, self.mix_ratio),
                         member=f'{dataset}/{split}', book=book)

    # --- sizes -----------------------------------------------------------------------------

    def low_budget(self, w: int, h: int) -> float:
        if self.low_scale is not None:
            return w * h * self.low_scale ** 2
        return self.low_pixels

    def plan(self, w: int, h: int, decision: str, family: Family) -> Plan:
        native = family.fit(w, h, self.native_max_pixels)
        if decision == 'native':
            return Plan('native', (w, h), native, family.tokens(native))
        if self.upsample_from_low:
            lw, lh = scale_to_budget(w, h, self.low_budget(w, h))
            via = (max(1, round(lw)), max(1, round(lh)))
            return Plan('low', (w, h), native, family.tokens(native), via=via)
        low = family.fit(w, h, self.low_budget(w, h))
        return Plan('low', (w, h), low, family.tokens(low))

    def apply(self, image: Image.Image, decision: str, family: Family) -> tuple[Image.Image, Plan]:
        """Resize once with the policy's filter (twice for upsample_from_low, by design)."""
        plan = self.plan(image.width, image.height, decision, family)
        resample = FILTERS[self.filter]
        if plan.via is not None:
            image = image.resize(plan.via, resample)
        if image.size != plan.size:
            image = image.resize(plan.size, resample)
        return image, plan
