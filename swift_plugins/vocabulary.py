"""medres's vocabulary: every name and constant that more than one part of medres speaks.

Mode names, the `MEDRES_*` environment variables (the only way configuration crosses into a
`swift sft` / `swift infer` process, because ms-swift rejects flags it does not know), and the
paper's settings (arXiv 2510.18304, section 3). Nothing else in the package spells these out.
"""
from __future__ import annotations

import difflib
from typing import Iterable, Mapping

# ---------------------------------------------------------------------------- names

NAMESPACE = 'medres'                       # registry datasets are `medres/<name>`
RESOLUTION_MODES = ('native', 'low', 'mixed')
TRAINING_ARMS = ('none', 'low', 'native', 'mixed')   # 'none': the base model, no finetuning
INFERENCE_MODES = ('low', 'native', 'mixed')      # the paper's table order
MIX_BALANCES = ('none', 'dataset', 'modality')
FILTERS = ('lanczos', 'bicubic', 'bilinear', 'box', 'nearest')
NATIVE_ALIGNS = ('resize', 'crop', 'pad')   # how an image already near the model's grid lands on it
BAD_ROW_MODES = ('error', 'skip')
SCORING_MODES = ('strict', 'compat')
EPOCH_CALLBACK = 'medres_epoch'            # `swift sft --callbacks medres_epoch`

# ---------------------------------------------------------------------------- the paper's settings

PAPER_LOW_PIXELS = 1280 * 28 * 28          # "low resolution": 1,003,520 pixels (Qwen2-VL's 1280 tokens)
PAPER_NATIVE_MAX_PIXELS = 12_000_000       # native inference cap of the paper's evaluation
PAPER_MIX_RATIO = 0.5                      # 50/50 mixed-resolution training
PAPER_SEED = 42                            # the paper's seed (splits, mixed draw)
PAPER_GLOBAL_BATCH = 128                   # total batch of every training run
PAPER_SLIDE_DOWNSAMPLE = 0.25              # WSI renders at ~25% of level 0
PAPER_SUBCELLULAR_TEST_ROWS = 2000         # the first 2,000 shuffled captions are test
PAPER_CERVICAL_TEST_IMAGES = 200

# ---------------------------------------------------------------------------- environment variables


class Env:
    """`MEDRES_*` variable names. Read only where medres meets ms-swift or the shell."""
    RESOLUTION = 'MEDRES_RESOLUTION'
    LOW_PIXELS = 'MEDRES_LOW_PIXELS'
    LOW_SCALE = 'MEDRES_LOW_SCALE'
    NATIVE_MAX_PIXELS = 'MEDRES_NATIVE_MAX_PIXELS'
    MIX_RATIO = 'MEDRES_MIX_RATIO'
    MIX_SEED = 'MEDRES_MIX_SEED'
    MIX_BALANCE = 'MEDRES_MIX_BALANCE'
    MIX_REDRAW = 'MEDRES_MIX_REDRAW'
    FILTER = 'MEDRES_FILTER'
    UPSAMPLE_FROM_LOW = 'MEDRES_UPSAMPLE_FROM_LOW'
    NATIVE_ALIGN = 'MEDRES_NATIVE_ALIGN'
    JPEG_DRAFT = 'MEDRES_JPEG_DRAFT'
    IMAGE_CACHE = 'MEDRES_IMAGE_CACHE'
    IMAGE_CACHE_GB = 'MEDRES_IMAGE_CACHE_GB'
    TOKEN_LOG = 'MEDRES_TOKEN_LOG'
    REGISTRY = 'MEDRES_REGISTRY'
    LOCAL_SOURCES = 'MEDRES_LOCAL_SOURCES'
    DATA_HOME = 'MEDRES_DATA_HOME'
    BAD_ROWS = 'MEDRES_BAD_ROWS'
    MAX_IMAGE_PIXELS = 'MEDRES_MAX_IMAGE_PIXELS'
    PAD_ASPECT = 'MEDRES_PAD_ASPECT'
    DEBUG = 'MEDRES_DEBUG'

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(v for k, v in vars(cls).items() if k.isupper() and isinstance(v, str))


ENV_PREFIX = 'MEDRES_'
# The variables that make up the resolution policy (the rest configure data and logging).
POLICY_ENV = (Env.RESOLUTION, Env.LOW_PIXELS, Env.LOW_SCALE, Env.NATIVE_MAX_PIXELS, Env.MIX_RATIO, Env.MIX_SEED,
              Env.MIX_BALANCE, Env.MIX_REDRAW, Env.FILTER, Env.UPSAMPLE_FROM_LOW, Env.NATIVE_ALIGN, Env.JPEG_DRAFT)
TRUE_STRINGS = frozenset({'1', 'true', 'yes', 'on'})

# The datasets `medres prepare <name>` builds from public raw downloads (its converters; a test keeps
# the two in step): only these get "run `medres prepare <name>`" as the fix for a missing folder.
PREPARED_DATASETS = ('subcellular', 'compound', 'cervical', 'wsi')
# How many bad rows an error or summary lists before pointing at the file that lists them all.
BAD_ROWS_SHOWN = 10

# PIL's own decompression-bomb limit; raise MEDRES_MAX_IMAGE_PIXELS for slides and big microscopy.
DEFAULT_MAX_IMAGE_PIXELS = 178_956_970
# Size bound of the on-disk cache of policy-resized images (MEDRES_IMAGE_CACHE), in GB.
DEFAULT_IMAGE_CACHE_GB = 20.0

# Keeps a run off every hub: tests, the demo, air-gapped clusters.
OFFLINE_ENV = {'HF_HUB_OFFLINE': '1', 'MODELSCOPE_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1'}


def unknown_env_names(env: Mapping[str, str], known: Iterable[str] = ()) -> list[tuple[str, list[str]]]:
    """`MEDRES_*` names in `env` that medres does not know, each with the closest valid names."""
    valid = set(Env.names()) | set(known)
    out = []
    for name in sorted(env):
        if name.startswith(ENV_PREFIX) and name not in valid:
            out.append((name, difflib.get_close_matches(name, sorted(valid), n=2, cutoff=0.6)))
    return out


def misspelling_warnings(env: Mapping[str, str]) -> list[str]:
    return [f'{name} is not a medres variable and is ignored' + (f'; did you mean {" or ".join(close)}?' if close
                                                                   else f'; known: {", ".join(Env.names())}')
            for name, close in unknown_env_names(env)]


def registered_name(name: str) -> str:
    """`vqa-rad` -> `medres/vqa-rad` (unchanged when already registered)."""
    return name if name.startswith(f'{NAMESPACE}/') else f'{NAMESPACE}/{name}'


def entry_name(name: str) -> str:
    """`medres/vqa-rad` -> `vqa-rad`."""
    return name.removeprefix(f'{NAMESPACE}/')
