"""The resolution policy: which image each sample's model sees (native, low or mixed).

Configured by `MEDRES_*` environment variables (a recipe's `ENV:` section or the shell), the one
channel into `swift sft` and `swift infer` (ms-swift rejects flags it does not know). The fields,
their variables and defaults are `ResolutionPolicy`'s; the defaults are the paper's settings.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Mapping, Optional, Sequence

from PIL import Image

from ..errors import PolicyError
from ..vocabulary import (
    FILTERS,
    MIX_BALANCES,
    NATIVE_ALIGNS,
    PAPER_LOW_PIXELS,
    PAPER_MIX_RATIO,
    PAPER_NATIVE_MAX_PIXELS,
    PAPER_SEED,
    RESOLUTION_MODES,
    TRUE_STRINGS,
    Env,
)
from .families import Family, Size, scale_to_budget
from .mixing import MixSlot, QuotaBook, iid_is_low, mix_slots, sample_id

RESAMPLE = {name: getattr(Image.Resampling, name.upper()) for name in FILTERS}

# Field of ResolutionPolicy -> its environment variable.
_ENV = {
    'mode': Env.RESOLUTION, 'low_pixels': Env.LOW_PIXELS, 'low_scale': Env.LOW_SCALE,
    'native_max_pixels': Env.NATIVE_MAX_PIXELS, 'mix_ratio': Env.MIX_RATIO, 'seed': Env.MIX_SEED,
    'balance': Env.MIX_BALANCE, 'redraw': Env.MIX_REDRAW, 'filter': Env.FILTER,
    'upsample_from_low': Env.UPSAMPLE_FROM_LOW, 'native_align': Env.NATIVE_ALIGN, 'jpeg_draft': Env.JPEG_DRAFT,
}
# The fields that change what a mode does (the rest are ignored by it): what a recipe's ENV lists.
_MODE_FIELDS = {
    'native': ('mode', 'native_max_pixels', 'filter', 'native_align'),
    'low': ('mode', 'low_pixels', 'low_scale', 'filter', 'upsample_from_low', 'native_align', 'jpeg_draft'),
    'mixed': ('mode', 'mix_ratio', 'balance', 'seed', 'redraw', 'low_pixels', 'low_scale', 'native_max_pixels',
              'filter', 'upsample_from_low', 'native_align', 'jpeg_draft'),
}


@dataclass(frozen=True)
class Plan:
    """What the policy did to one image."""
    decision: str                      # 'native' | 'low'
    source: Size
    size: Size                         # what the model's processor receives (and keeps)
    tokens: int
    via: Optional[Size] = None         # the low-resolution size an upsampled image went through
    align: str = 'resize'              # how `size` is reached: 'resize', or 'crop' / 'pad' (centred, pixels kept)


@dataclass(frozen=True)
class ResolutionPolicy:
    """Which image each sample's model sees; each field is one `MEDRES_*` variable (see `_ENV`).

    Attributes:
        mode: `native` (the image as stored, up to `native_max_pixels`), `low` (downscaled to
            `low_pixels`, or by `low_scale` per side) or `mixed` (a seeded share `mix_ratio` of the
            samples at low, the rest native).
        low_pixels: the low budget in pixels; the paper's is 1280 x 28 x 28.
        low_scale: low as a per-side scale factor instead of a pixel budget.
        native_max_pixels: native is never upscaled and capped at this many pixels.
        mix_ratio: mixed: the fraction of samples at low.
        seed: mixed: the draw is deterministic from (seed, sample id).
        balance: mixed: exactly round(p x n) low samples per `modality` or `dataset`, or `none`.
        redraw: mixed: a new draw each epoch (needs `--callbacks medres_epoch`).
        filter: the resampling filter of the one resize.
        upsample_from_low: low images are brought back up to the native size (Figure 5 ablation).
        native_align: how an image that needs no shrinking (native under the cap, or low under the
            budget) lands on the family's grid: `resize` (the paper: one resample, e.g. 2048 -> 2044
            px), `crop` (centre-crop the < one token of pixels past the grid) or `pad` (centre it on
            a black canvas rounded up to the grid; falls back to crop above the pixel budget).
            Crop and pad keep every pixel value; they apply only when each side moves by less than
            one token's pixels (`Family.align_tolerance`), else the image is resized.
        jpeg_draft: a JPEG shrunk by 2x or more is decoded at 1/2, 1/4 or 1/8 scale by libjpeg
            (never below the planned size), then resized exactly to the plan.
    """
    mode: str
    low_pixels: int = PAPER_LOW_PIXELS
    low_scale: Optional[float] = None
    native_max_pixels: int = PAPER_NATIVE_MAX_PIXELS
    mix_ratio: float = PAPER_MIX_RATIO
    seed: int = PAPER_SEED
    balance: str = 'modality'
    redraw: bool = False
    filter: str = 'lanczos'
    upsample_from_low: bool = False
    native_align: str = 'resize'
    jpeg_draft: bool = True

    def __post_init__(self):
        checks = [
            (self.mode in RESOLUTION_MODES, f'{_ENV["mode"]} must be one of {RESOLUTION_MODES}, got {self.mode!r}'),
            (self.low_pixels > 0, f'{_ENV["low_pixels"]} must be positive'),
            (self.low_scale is None or 0 < self.low_scale <= 1, f'{_ENV["low_scale"]} must be in (0, 1]'),
            (self.native_max_pixels > 0, f'{_ENV["native_max_pixels"]} must be positive'),
            (0 <= self.mix_ratio <= 1, f'{_ENV["mix_ratio"]} must be in [0, 1]'),
            (self.balance in MIX_BALANCES, f'{_ENV["balance"]} must be one of {MIX_BALANCES}'),
            (self.filter in FILTERS, f'{_ENV["filter"]} must be one of {sorted(FILTERS)}'),
            (self.native_align in NATIVE_ALIGNS, f'{_ENV["native_align"]} must be one of {NATIVE_ALIGNS}, '
                                                 f'got {self.native_align!r}'),
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
        flag = lambda v: v.strip().lower() in TRUE_STRINGS  # noqa: E731
        casts = {'low_pixels': int, 'low_scale': float, 'native_max_pixels': int, 'mix_ratio': float,
                 'seed': int, 'balance': str, 'filter': str, 'native_align': lambda v: v.strip().lower(),
                 'redraw': flag, 'upsample_from_low': flag, 'jpeg_draft': flag}
        for field, cast in casts.items():
            raw = env.get(_ENV[field])
            if raw not in (None, ''):
                try:
                    kwargs[field] = cast(raw)
                except ValueError:
                    raise PolicyError(f'{_ENV[field]}={raw!r} is not a valid {field}') from None
        return cls(**kwargs)

    def to_env(self, mode_fields_only: bool = False) -> dict[str, str]:
        """The `MEDRES_*` variables that give a `swift` run this policy; `mode_fields_only`: just
        those the mode uses (a recipe's `ENV:` section), unset options left out."""
        out = {}
        fields = asdict(self)
        for field in (_MODE_FIELDS[self.mode] if mode_fields_only else fields):
            value = fields[field]
            if value is None or (mode_fields_only and value is False and field != 'jpeg_draft'):
                continue
            out[_ENV[field]] = ('1' if value else '0') if isinstance(value, bool) else str(value)
        return out

    def as_dict(self) -> dict:
        """JSON-ready, keyed by field name (what `medres_policy.json` records)."""
        return asdict(self)

    def describe(self) -> str:
        low = f'scale {self.low_scale}' if self.low_scale else f'{self.low_pixels:,} px'
        mix = (f', {self.mix_ratio:.0%} low, seed {self.seed}, balance {self.balance}'
               f'{", re-drawn per epoch" if self.redraw else ""}') if self.mode == 'mixed' else ''
        up = ', low upsampled back to native' if self.upsample_from_low else ''
        align = f', {self.native_align} onto the grid' if self.native_align != 'resize' else ''
        return f'{self.mode} (low {low}, native cap {self.native_max_pixels:,} px, {self.filter}{mix}{up}{align})'

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
              book: Optional[QuotaBook] = None, indices: Optional[Sequence[int]] = None) -> Optional[list[MixSlot]]:
        """Balanced mixed-resolution slots for the `n` rows of a split (None unless mixed + balanced);
        `indices`: the source row indices of the rows the run keeps, when bad rows were dropped."""
        if self.mode != 'mixed' or self.balance == 'none':
            return None
        group_key = modality if self.balance == 'modality' else dataset
        ids = [sample_id(dataset, split, i) for i in (range(n) if indices is None else indices)]
        return mix_slots(ids, seed=self.seed, p=self.mix_ratio,
                         group=(self.balance, group_key, split, self.seed, self.mix_ratio),
                         member=f'{dataset}/{split}', book=book)

    # --- sizes -----------------------------------------------------------------------------

    def low_budget(self, w: int, h: int) -> float:
        if self.low_scale is not None:
            return w * h * self.low_scale ** 2
        return self.low_pixels

    def plan(self, w: int, h: int, decision: str, family: Family) -> Plan:
        """The size the processor gets; a `PolicyError` when the family would refuse that size."""
        native = family.fit(w, h, self.native_max_pixels)
        if decision == 'native':
            plan = self._aligned('native', w, h, self.native_max_pixels, family) or \
                Plan('native', (w, h), native, family.tokens(native))
        elif self.upsample_from_low:
            lw, lh = scale_to_budget(w, h, self.low_budget(w, h))
            via = (max(1, round(lw)), max(1, round(lh)))
            plan = Plan('low', (w, h), native, family.tokens(native), via=via)
        else:
            budget = self.low_budget(w, h)
            plan = self._aligned('low', w, h, budget, family)
            if plan is None:
                low = family.fit(w, h, budget)
                plan = Plan('low', (w, h), low, family.tokens(low))
        reason = family.check(plan.size)
        if reason:
            raise PolicyError(f'{self.mode} resolution plans {plan.size[0]}x{plan.size[1]} ({decision}) for this '
                              f'{w}x{h} image: {reason}')
        return plan

    def _aligned(self, decision: str, w: int, h: int, budget: float, family: Family) -> Optional[Plan]:
        """A crop/pad plan when the image needs no shrinking and each side is within one token of
        the family's grid (and the family keeps the aligned size as it is); None: resize."""
        grid, tol = family.align_grid, family.align_tolerance
        if self.native_align == 'resize' or grid is None or w * h > budget:
            return None
        floor = ((w // grid) * grid, (h // grid) * grid)
        ceil = (-(-w // grid) * grid, -(-h // grid) * grid)
        candidates = [('crop', floor)] if self.native_align == 'crop' else [('pad', ceil), ('crop', floor)]
        for align, (aw, ah) in candidates:
            if min(aw, ah) < grid or abs(aw - w) >= tol or abs(ah - h) >= tol or aw * ah > budget:
                continue
            if family.fit(aw, ah, budget) != (aw, ah):   # the processor would resize it again
                continue
            return Plan(decision, (w, h), (aw, ah), family.tokens((aw, ah)),
                        align=align if (aw, ah) != (w, h) else 'resize')
        return None

    def apply(self, image: Image.Image, decision: str, family: Family) -> tuple[Image.Image, Plan]:
        """Resize once with the policy's filter (twice for upsample_from_low, by design), or crop/pad
        (`native_align`); a lazily opened JPEG is decoded at reduced size first when `jpeg_draft`."""
        plan = self.plan(image.width, image.height, decision, family)
        self.draft(image, plan)
        return self.realize(image, plan), plan

    def draft(self, image: Image.Image, plan: Plan, transposed: bool = False) -> None:
        """Ask libjpeg to decode a not yet loaded JPEG at 1/2, 1/4 or 1/8 scale when the plan shrinks it
        by at least that much (PIL's draft mode: never below the first resize target). `transposed`:
        the plan's sizes are the EXIF-rotated ones, the decoder's are as stored."""
        target = plan.via or plan.size
        if not self.jpeg_draft or plan.align != 'resize' or getattr(image, 'format', None) != 'JPEG' \
                or not getattr(image, 'tile', None):
            return
        if transposed:
            target = target[::-1]
        if image.width >= 2 * target[0] and image.height >= 2 * target[1]:
            image.draft(None, target)

    def realize(self, image: Image.Image, plan: Plan) -> Image.Image:
        """The pixels `plan` calls for, from `image` (at the plan's source size, or a drafted JPEG)."""
        if plan.align == 'crop':
            w, h = image.size
            left, top = (w - plan.size[0]) // 2, (h - plan.size[1]) // 2
            return image.crop((left, top, left + plan.size[0], top + plan.size[1]))
        if plan.align == 'pad':
            canvas = Image.new(image.mode, plan.size)
            canvas.paste(image, ((plan.size[0] - image.width) // 2, (plan.size[1] - image.height) // 2))
            return canvas
        resample = RESAMPLE[self.filter]
        if plan.via is not None and image.size != plan.via:
            image = image.resize(plan.via, resample)
        if image.size != plan.size:
            image = image.resize(plan.size, resample)
        return image
