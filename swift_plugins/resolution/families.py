"""Each model family's visual unit: the only place that knows pixels -> visual tokens.

- Qwen2-VL / Qwen2.5-VL: 14 px patches merged 2x2, so one token per 28x28 pixels; the
  processor keeps any size whose sides are multiples of 28 (`min_pixels` / `max_pixels`).
- InternVL2.5 (and the transformers-native InternVL): 448x448 tiles picked by aspect ratio
  under a tile budget (`max_num`), 256 tokens per tile, plus a 448x448 thumbnail when there is
  more than one tile.
- LLaVA-OneVision: anyres; a 384x384 base view plus 384 px crops of the image resized into the
  best grid pinpoint, 729 tokens per crop before unpadding, newline tokens, and the
  `anyres_max_9` pooling of large grids.

`fit()` turns a wanted size into the size the family's processor will leave alone, and
`tokens()` counts the visual tokens that size costs, computed here independently of the
processor so that tests can check the two agree. `from_template()` reads the unit sizes from a
template's processor and `apply_knobs()` sets the knob that keeps the template from resizing
again. Adding a family (a new Qwen-VL or InternVL variant) is one subclass and one
`register_family(cls)`; `resolution.templates` then wraps its template types.
"""
from __future__ import annotations

import math
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator, Optional

from ..errors import UsageError

Size = tuple[int, int]  # (width, height)


def scale_to_budget(w: float, h: float, max_pixels: Optional[float]) -> tuple[float, float]:
    """Shrink (never grow) to at most `max_pixels`, aspect ratio kept."""
    if max_pixels and w * h > max_pixels:
        s = math.sqrt(max_pixels / (w * h))
        return w * s, h * s
    return w, h


class Family:
    name: ClassVar[str]
    # ms-swift template types whose encoding this family describes.
    templates: ClassVar[tuple[str, ...]]
    # The placeholder token repeated once per visual token in the encoded input ids.
    image_token: ClassVar[str]
    # The processor refuses an image whose long side is more than this many times its short side.
    max_aspect_ratio: ClassVar[Optional[float]] = None

    def check(self, size: Size) -> Optional[str]:
        """Why this family's processor would refuse an image of `size` (as it receives it), or None."""
        w, h = size
        ratio = max(w, h) / max(1, min(w, h))
        if self.max_aspect_ratio is not None and ratio > self.max_aspect_ratio:
            return f'{w}x{h} has an aspect ratio of {ratio:.1f}:1, over the {self.max_aspect_ratio:g}:1 {self.name} accepts'
        return None

    def fit(self, w: float, h: float, max_pixels: Optional[float]) -> Size:
        raise NotImplementedError

    @property
    def align_grid(self) -> Optional[int]:
        """The side multiple the processor keeps as it is (None: it always resizes, e.g. anyres)."""
        return None

    @property
    def align_tolerance(self) -> int:
        """Pixels per visual token along a side: how far crop/pad alignment may move a side."""
        return 0

    def tokens(self, size: Size) -> int:
        raise NotImplementedError

    def knobs(self, sizes: list[Size]) -> dict:
        """Settings that make the template's own processing keep `sizes` as they are."""
        return {}

    @classmethod
    def from_template(cls, template: Any) -> 'Family':
        """This family with its unit sizes read from an ms-swift template's processor."""
        return cls()

    @contextmanager
    def apply_knobs(self, template: Any, inputs: Any, sizes: list[Size]) -> Iterator[None]:
        """Within the block, `template` encodes `inputs` keeping `sizes` exactly (see `knobs`)."""
        yield

    # Engine modes (vLLM): the engine's own processor encodes the image, so the knob travels with
    # the request, and budgets the engine sizes at start (its encoder cache) must cover the plan.
    def engine_knobs(self, template: Any, inputs: Any, sizes: list[Size]) -> None:
        """Set on `inputs` (per request, never on the shared template) what keeps `sizes` exact in the engine."""

    def engine_settings(self, max_pixels: int) -> dict:
        """The engine's `mm_processor_kwargs` at start, so that any image the policy sizes to at most
        `max_pixels` fits the budgets it allocates (the largest tile count, the largest pixel count)."""
        return {}


@contextmanager
def _attribute(target: Any, name: str, value: Any) -> Iterator[None]:
    """`target.name = value` for the block, restored after (templates are shared between samples)."""
    old = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        setattr(target, name, old)


@dataclass
class Qwen2VL(Family):
    name: ClassVar[str] = 'qwen2_vl'
    templates: ClassVar[tuple[str, ...]] = ('qwen2_vl', 'qwen2_5_vl', 'qvq')
    image_token: ClassVar[str] = '<|image_pad|>'
    # qwen_vl_utils / transformers smart_resize: "absolute aspect ratio must be smaller than 200".
    max_aspect_ratio: ClassVar[Optional[float]] = 200
    patch_size: int = 14
    merge_size: int = 2
    MAX_ASPECT: ClassVar[int] = 200   # qwen_vl_utils / the processor refuse longer-to-shorter side ratios above it

    @property
    def unit(self) -> int:
        return self.patch_size * self.merge_size

    def fit(self, w, h, max_pixels):
        # Floor, as Qwen's own smart_resize does above max_pixels, so the result never exceeds
        # the budget; an image under one unit is upscaled to one unit (the model's minimum).
        w, h = scale_to_budget(w, h, max_pixels)
        u = self.unit
        return max(u, int(w // u) * u), max(u, int(h // u) * u)

    def tokens(self, size):
        return (size[0] // self.unit) * (size[1] // self.unit)

    @property
    def align_grid(self):
        return self.unit

    @property
    def align_tolerance(self):
        return self.unit

    def knobs(self, sizes):
        # qwen_vl_utils.fetch_image rounds to multiples of 28 inside [min_pixels, max_pixels]:
        # with both bounds around our already aligned sizes it returns them unchanged.
        return {'min_pixels': self.unit * self.unit, 'max_pixels': max(w * h for w, h in sizes)}

    @classmethod
    def from_template(cls, template):
        ip = getattr(template.processor, 'image_processor', None)
        return cls(patch_size=getattr(ip, 'patch_size', 14), merge_size=getattr(ip, 'merge_size', 2))

    @contextmanager
    def apply_knobs(self, template, inputs, sizes):
        self.engine_knobs(template, inputs, sizes)
        yield

    def engine_knobs(self, template, inputs, sizes):
        # ms-swift's Qwen2-VL template passes per-sample chat_template_kwargs to fetch_image in every
        # mode (and tells vLLM `do_resize=False`), so the same per-request knob holds in the engine.
        inputs.chat_template_kwargs = {**(inputs.chat_template_kwargs or {}), **self.knobs(sizes)}

    def engine_settings(self, max_pixels):
        # vLLM sizes its encoder cache for the processor's max_pixels; a native image above the
        # checkpoint's own default would not fit it. A side under one unit is raised to one unit, so
        # a thin image (Qwen's processor allows aspect ratios up to 200) can plan up to 200 units.
        return {'max_pixels': max(self.MAX_ASPECT * self.unit * self.unit, int(max_pixels))}


@dataclass
class InternVL(Family):
    name: ClassVar[str] = 'internvl'
    templates: ClassVar[tuple[str, ...]] = ('internvl2_5', 'internvl2', 'internvl3_5', 'internvl_hf')
    image_token: ClassVar[str] = '<IMG_CONTEXT>'
    tile: int = 448
    tokens_per_tile: int = 256
    min_tiles: int = 1
    max_tiles: int = 64
    # The tile budget's name in the engine's processor: vLLM's own InternVL processor (remote-code
    # checkpoints) calls it max_dynamic_patch, transformers' InternVLProcessor max_patches.
    engine_knob: str = 'max_patches'

    def grid(self, w: float, h: float, max_num: int) -> tuple[int, int]:
        """InternVL's `find_closest_aspect_ratio` over grids of at most `max_num` tiles."""
        ratios = sorted({(i, j) for n in range(self.min_tiles, max_num + 1) for i in range(1, n + 1)
                         for j in range(1, n + 1) if self.min_tiles <= i * j <= max_num}, key=lambda r: r[0] * r[1])
        aspect, area = w / h, w * h
        best, best_diff = (1, 1), float('inf')
        for r in ratios:
            diff = abs(aspect - r[0] / r[1])
            if diff < best_diff:
                best, best_diff = r, diff
            elif diff == best_diff and area > 0.5 * self.tile * self.tile * r[0] * r[1]:
                best = r
        return best

    def tile_budget(self, w: float, h: float) -> int:
        # As many tiles as it takes to cover the pixels, so native keeps ~1 image px per tile px.
        return max(self.min_tiles, min(self.max_tiles, math.ceil(w * h / (self.tile * self.tile))))

    def fit(self, w, h, max_pixels):
        w, h = scale_to_budget(w, h, max_pixels)
        budget = self.tile_budget(w, h)
        if max_pixels:
            budget = max(self.min_tiles, min(budget, int(max_pixels // (self.tile * self.tile)) or 1))
        i, j = self.grid(w, h, budget)
        return i * self.tile, j * self.tile

    @property
    def align_grid(self):
        return self.tile

    @property
    def align_tolerance(self):
        return self.tile // max(1, math.isqrt(self.tokens_per_tile))   # 448 / 16 = 28 px per token

    def num_tiles(self, size) -> int:
        n = (size[0] // self.tile) * (size[1] // self.tile)
        return n + (1 if n > 1 else 0)  # thumbnail

    def tokens(self, size):
        return self.num_tiles(size) * self.tokens_per_tile

    def knobs(self, sizes):
        # The exact grid as the budget: InternVL then picks that grid for an image of that shape.
        return {'max_num': max((w // self.tile) * (h // self.tile) for w, h in sizes)}

    @classmethod
    def from_template(cls, template):
        if hasattr(template, 'max_num'):  # remote-code InternVL2.5: ms-swift's own tiling
            tile = template.input_size
            return cls(tile=tile, tokens_per_tile=int((tile // 14) ** 2 * 0.25), engine_knob='max_dynamic_patch')
        ip = getattr(template.processor, 'image_processor', None)
        size = getattr(ip, 'size', None) or {}
        tile = size.get('height', 448) if isinstance(size, dict) else 448
        return cls(tile=tile, tokens_per_tile=getattr(template.processor, 'image_seq_length', 256))

    def apply_knobs(self, template, inputs, sizes):
        # Remote-code templates read self.max_num; the transformers-native one its processor's max_patches.
        target, name = (template, 'max_num') if hasattr(template, 'max_num') else \
            (template.processor.image_processor, 'max_patches')
        return _attribute(target, name, self.knobs(sizes)['max_num'])

    def engine_knobs(self, template, inputs, sizes):
        inputs.mm_processor_kwargs = {**(inputs.mm_processor_kwargs or {}),
                                      self.engine_knob: self.knobs(sizes)['max_num']}

    def engine_settings(self, max_pixels):
        # The most tiles `fit` plans under max_pixels: vLLM's encoder cache is sized for the
        # processor's default cap (12 tiles), which a per-request larger budget would overflow.
        return {self.engine_knob: max(self.min_tiles, min(self.max_tiles, int(max_pixels // (self.tile * self.tile))))}


# llava-hf/llava-onevision-qwen2-*-ov-hf image_grid_pinpoints: 384 px crops, 1x1 to 6x6.
OV_PINPOINTS = [[384 * i, 384 * j] for i in range(1, 7) for j in range(1, 7)]


@dataclass
class LlavaOneVision(Family):
    name: ClassVar[str] = 'llava_onevision'
    templates: ClassVar[tuple[str, ...]] = ('llava_onevision_hf',)
    image_token: ClassVar[str] = '<image>'
    crop: int = 384
    tokens_per_side: int = 27          # SigLIP-384 with 14 px patches
    max_num_patches: int = 9           # vision_aspect_ratio anyres_max_9
    pinpoints: list = field(default_factory=lambda: [list(p) for p in OV_PINPOINTS])  # [height, width]

    def best_resolution(self, w: float, h: float) -> tuple[int, int]:
        """transformers' `select_best_resolution`: most effective pixels, then least waste."""
        best, best_eff, best_waste = None, 0, float('inf')
        for ph, pw in self.pinpoints:
            s = min(pw / w, ph / h)
            dw, dh = int(w * s), int(h * s)
            eff = min(dw * dh, w * h)
            waste = pw * ph - eff
            if eff > best_eff or (eff == best_eff and waste < best_waste):
                best, best_eff, best_waste = (ph, pw), eff, waste
        return best

    def fit(self, w, h, max_pixels):
        # Anyres always resizes into its best pinpoint (upscaling small images to fill it);
        # resizing to that fitted size here makes the processor's own resize a no-op.
        w, h = scale_to_budget(w, h, max_pixels)
        w, h = max(1, round(w)), max(1, round(h))
        ph, pw = self.best_resolution(w, h)
        sw, sh = pw / w, ph / h
        if sw < sh:
            return pw, min(math.ceil(h * sw), ph)
        return min(math.ceil(w * sh), pw), ph

    def tokens(self, size):
        w, h = size
        ph, pw = self.best_resolution(w, h)
        side = self.tokens_per_side
        cur_h, cur_w = side * (ph // self.crop), side * (pw // self.crop)
        if w / h > cur_w / cur_h:
            new_h = int(round(h * (cur_w / w), 7))
            cur_h -= ((cur_h - new_h) // 2) * 2
        else:
            new_w = int(round(w * (cur_h / h), 7))
            cur_w -= ((cur_w - new_w) // 2) * 2
        unpadded, newlines = cur_h * cur_w, cur_h
        ratio = math.sqrt(cur_h * cur_w / (self.max_num_patches * side ** 2))
        if ratio > 1.1:
            unpadded = int(cur_h // ratio) * int(cur_w // ratio)
            newlines = int(cur_h // ratio)
        return unpadded + newlines + side * side


    @classmethod
    def from_template(cls, template):
        proc = template.processor
        ip = getattr(proc, 'image_processor', None)
        crop = (getattr(ip, 'size', None) or {}).get('height', 384)
        tokens = getattr(proc, 'num_image_tokens', 729)
        max_patches = int(str(getattr(proc, 'vision_aspect_ratio', 'anyres_max_9')).replace('anyres_max_', ''))
        pinpoints = getattr(ip, 'image_grid_pinpoints', None) or cls().pinpoints
        return cls(crop=crop, tokens_per_side=int(round(tokens ** 0.5)), max_num_patches=max_patches,
                   pinpoints=[list(p) for p in pinpoints])
    # No knob: anyres keeps an image already fitted into its best pinpoint (see `fit`).


FAMILIES: dict[str, type[Family]] = {}
TEMPLATE_FAMILY: dict[str, type[Family]] = {}


def register_family(cls: type[Family]) -> type[Family]:
    """Make a family known by its name and its template types (usable as a class decorator)."""
    FAMILIES[cls.name] = cls
    for template_type in cls.templates:
        TEMPLATE_FAMILY[template_type] = cls
    return cls


for _family in (Qwen2VL, InternVL, LlavaOneVision):
    register_family(_family)


# The template this process encodes with, and its family. ms-swift builds (and sets the mode of) the
# template before it loads the datasets, so the loader refuses at load time what the processor would
# refuse mid-run, and knows whether the run trains or predicts.
_RUN_FAMILY: dict = {}


def set_run_template(template: Any) -> None:
    """Called when a medres template is built (`templates.init_env_args`)."""
    cls = TEMPLATE_FAMILY.get(template.template_meta.template_type)
    if cls is not None:
        _RUN_FAMILY['family'] = cls
        _RUN_FAMILY['template'] = weakref.ref(template)


def run_family() -> Optional[Family]:
    """The family of this process's template, or None outside a `swift` run."""
    cls = _RUN_FAMILY.get('family')
    return cls() if cls else None


def run_predicts() -> Optional[bool]:
    """True in `swift infer` (the template encodes for inference), False in training, None outside a run."""
    ref = _RUN_FAMILY.get('template')
    template = ref() if ref is not None else None
    return None if template is None else not template.is_training


def get_family(name: str) -> Family:
    """A family by its name or by one of its ms-swift template types."""
    cls = FAMILIES.get(name) or TEMPLATE_FAMILY.get(name)
    if cls is None:
        raise UsageError(f'unknown model family {name!r}; known: {sorted(FAMILIES)} '
                         f'(or template types {sorted(TEMPLATE_FAMILY)})')
    return cls()
