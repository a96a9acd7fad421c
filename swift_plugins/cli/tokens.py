"""`medres tokens`: visual tokens and relative compute of a resolution policy, per split, from headers."""
from __future__ import annotations

import json
from pathlib import Path

from ..vocabulary import MIX_BALANCES, NATIVE_ALIGNS, RESOLUTION_MODES, Env

NAME = 'tokens'


def register(sub) -> None:
    tk = sub.add_parser(NAME, help='visual tokens and relative compute of a resolution policy, per split')
    tk.add_argument('--dataset', action='append', default=[], metavar='NAME[:SPLIT[/SPLIT]]',
                    help='registry dataset (repeatable; in the order a run loads them, which fixes the mixed draw)')
    tk.add_argument('--jsonl', action='append', default=[], metavar='FILE',
                    help='an ms-swift jsonl whose rows have `images` (repeatable)')
    tk.add_argument('--family', default='qwen2_vl',
                    help='model family: qwen2_vl, internvl, llava_onevision, or an ms-swift template type')
    tk.add_argument('--resolution', choices=RESOLUTION_MODES,
                    help='one policy (default: native, low and mixed side by side)')
    tk.add_argument('--low-pixels', type=int, help=f'low budget in pixels (default: {Env.LOW_PIXELS} or the paper\'s)')
    tk.add_argument('--low-scale', type=float, help='low as a per-side scale factor instead, e.g. 0.5')
    tk.add_argument('--native-max-pixels', type=int, help='cap of native images in pixels')
    tk.add_argument('--mix-ratio', type=float, help='mixed: fraction of images at low (default 0.5)')
    tk.add_argument('--mix-seed', type=int, help='mixed: seed of the draw (default 42, as the run)')
    tk.add_argument('--balance', choices=MIX_BALANCES, help='mixed: balance the low share per modality, dataset, or not')
    tk.add_argument('--upsample-from-low', action='store_true', help='low images brought back up to native size')
    tk.add_argument('--native-align', choices=NATIVE_ALIGNS,
                    help='near-grid images resized (default), cropped or padded onto the grid (pad costs tokens)')
    tk.add_argument('--json', action='store_true', help='print the rows as JSON')
    tk.set_defaults(run=run)


def policies(args):
    """The policies to report: the one asked for, or native / low / mixed side by side. The
    shell's MEDRES_* variables give the defaults, as they would for the run."""
    from dataclasses import replace

    from ..resolution.policy import ResolutionPolicy
    base = ResolutionPolicy.from_env(args.env) or ResolutionPolicy(mode='native')
    overrides = {k: v for k, v in {
        'low_pixels': args.low_pixels, 'low_scale': args.low_scale, 'native_max_pixels': args.native_max_pixels,
        'mix_ratio': args.mix_ratio, 'seed': args.mix_seed, 'balance': args.balance,
        'upsample_from_low': args.upsample_from_low or None, 'native_align': args.native_align}.items()
        if v is not None}
    base = replace(base, **overrides)
    modes = [args.resolution] if args.resolution else list(RESOLUTION_MODES)
    return [replace(base, mode=m) for m in modes]


def run(args) -> int:
    from rich.table import Table

    from ..data.sizes import jsonl_split_sizes, load_registry_sizes
    from ..errors import UsageError
    from ..resolution.families import get_family
    from ..resolution.tokens import policy_costs
    from .common import console, fmt_ratio, humanize

    family = get_family(args.family)
    if not (args.dataset or args.jsonl):
        raise UsageError('medres tokens: give --dataset NAME[:SPLIT] and/or --jsonl FILE')
    splits = load_registry_sizes(args.dataset, args.settings) + [jsonl_split_sizes(Path(p)) for p in args.jsonl]
    rows = [(policy, c) for policy in policies(args) for c in policy_costs(splits, family, policy)]
    if args.json:
        print(json.dumps([{'policy': p.describe(), 'mode': p.mode, 'family': family.name, **c.as_dict()}
                          for p, c in rows], indent=2))
        return 0
    table = Table(title=f'visual tokens per image, {family.name}')
    for col in ('dataset:split', 'policy', 'images', 'low', 'mean', 'p95', 'max', 'tokens/epoch', 'vs native'):
        table.add_column(col, justify='left' if col in ('dataset:split', 'policy') else 'right',
                         no_wrap=col == 'dataset:split')
    for p, c in rows:
        table.add_row(f'{c.dataset}:{c.split}', p.mode, f'{c.images:,}', f'{c.low_images:,}', f'{c.mean_tokens:,.0f}',
                      f'{c.p95_tokens:,.0f}', f'{c.max_tokens:,}', humanize(c.total_tokens), fmt_ratio(c.cost_vs_native))
    console.print(table)
    console.print('policy: ' + '; '.join(sorted({p.describe() for p, _ in rows})), highlight=False)
    return 0
