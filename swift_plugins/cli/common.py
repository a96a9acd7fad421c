"""What several subcommands share: the console, table formatting, resolution-policy flags."""
from __future__ import annotations

import math
from pathlib import Path

from rich.console import Console

from ..vocabulary import FILTERS, Env

console = Console()


def humanize(n: float) -> str:
    for unit, div in (('G', 1e9), ('M', 1e6), ('k', 1e3)):
        if abs(n) >= div:
            return f'{n / div:.2f}{unit}'
    return f'{n:.0f}' if n == int(n) else f'{n:.1f}'


def fmt_ratio(x: float) -> str:
    return '-' if math.isnan(x) else f'{x:.3f}x'


def fmt_points(x) -> str:
    return '-' if x is None else f'{x:.1f}'


def add_policy_args(p) -> None:
    """Inference-policy overrides of `medres grid` (each one `MEDRES_*` variable of the cells)."""
    p.add_argument('--low-pixels', type=int, help=f'low budget in pixels ({Env.LOW_PIXELS})')
    p.add_argument('--low-scale', type=float, help=f'low as a per-side scale ({Env.LOW_SCALE})')
    p.add_argument('--native-max-pixels', type=int, help=f'native cap ({Env.NATIVE_MAX_PIXELS})')
    p.add_argument('--mix-seed', type=int, help=f'seed of the mixed-inference draw ({Env.MIX_SEED})')
    p.add_argument('--filter', choices=FILTERS, help=f'resampling filter ({Env.FILTER})')


def policy_overrides(args) -> dict[str, str]:
    names = {'low_pixels': Env.LOW_PIXELS, 'low_scale': Env.LOW_SCALE, 'native_max_pixels': Env.NATIVE_MAX_PIXELS,
             'mix_seed': Env.MIX_SEED, 'filter': Env.FILTER}
    return {env: str(getattr(args, a)) for a, env in names.items() if getattr(args, a, None) is not None}


def add_bootstrap_args(p) -> None:
    p.add_argument('--n-boot', type=int, default=2000, help='bootstrap resamples for the CIs (default 2000)')
    p.add_argument('--bootstrap-seed', type=int, default=0, help='seed of the bootstrap resampling (default 0)')


def model_ref(text: str) -> str:
    """A checkpoint folder as an absolute path, a hub id unchanged."""
    return str(Path(text).resolve()) if Path(text).exists() else text
