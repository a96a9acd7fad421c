"""`medres tokens`: visual tokens and relative compute of a resolution policy, per split, counting
only what the run would load (refused rows are listed with their reasons)."""
from __future__ import annotations

import json
import os
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
    tk.add_argument('--headers-only', action='store_true',
                    help='read sizes from image headers, without decoding pixels (fast; a truncated or corrupt file '
                         'is then counted although the run would refuse it)')
    tk.add_argument('--workers', type=int, default=min(8, os.cpu_count() or 1),
                    help='processes decoding images (default: min(8, cores))')
    tk.add_argument('--native-align', choices=NATIVE_ALIGNS,
                    help='near-grid images resized (default), cropped or padded onto the grid (pad costs tokens)')
    tk.add_argument('--json', action='store_true', help='print the rows as JSON')
    tk.set_defaults(run=run)


def policies(args):
    """The policies to report: the one asked for, or native / low / mixed side by side. The
    shell's MEDRES_* variables give the defaults, as they would for the run."""
    from dataclasses import replace

    from ..resolution.policy import ResolutionPolicy
    # The shell's MEDRES_* settings count even without MEDRES_RESOLUTION (the mode is chosen here).
    base = ResolutionPolicy.from_env({**args.env, Env.RESOLUTION: args.env.get(Env.RESOLUTION) or 'native'})
    overrides = {k: v for k, v in {
        'low_pixels': args.low_pixels, 'low_scale': args.low_scale, 'native_max_pixels': args.native_max_pixels,
        'mix_ratio': args.mix_ratio, 'seed': args.mix_seed, 'balance': args.balance,
        'upsample_from_low': args.upsample_from_low or None, 'native_align': args.native_align}.items()
        if v is not None}
    base = replace(base, **overrides)
    modes = [args.resolution] if args.resolution else list(RESOLUTION_MODES)
    return [replace(base, mode=m) for m in modes]


def run(args) -> int:
    # Everything a typo can break is checked before any data is read (and before ms-swift is imported).
    from ..data.sizes import jsonl_split_sizes, registry_sizes, resolve_specs
    from ..errors import UsageError
    from ..resolution.families import get_family
    from ..resolution.tokens import policy_costs

    family = get_family(args.family)
    if not (args.dataset or args.jsonl):
        raise UsageError('medres tokens: give --dataset NAME[:SPLIT] and/or --jsonl FILE')
    if args.workers < 1:
        raise UsageError(f'--workers {args.workers}: needs at least 1')
    for p in args.jsonl:
        if not Path(p).is_file():
            raise UsageError(f'--jsonl {p}: no such file')
    wanted = policies(args)
    targets = resolve_specs(args.dataset, args.settings)
    opts = dict(headers_only=args.headers_only, workers=args.workers)
    splits = [registry_sizes(entry, split, args.settings, source, **opts) for entry, split, source in targets]
    splits += [jsonl_split_sizes(Path(p), args.settings, **opts) for p in args.jsonl]
    pad = args.settings.pad_aspect
    rows = [(policy, c) for policy in wanted for c in policy_costs(splits, family, policy, pad)]
    if args.json:
        print(json.dumps([{'policy': p.describe(), 'mode': p.mode, 'family': family.name,
                           'headers_only': args.headers_only, **c.as_dict()} for p, c in rows], indent=2))
        return 0
    _print_table(args, family, rows)
    return 0


def _print_table(args, family, rows) -> None:
    from rich.console import Console
    from rich.measure import Measurement
    from rich.table import Table

    from ..data.bad_rows import BadRow, bad_rows_path, summary, write_bad_rows
    from .common import console, fmt_ratio, humanize

    names = [f'{c.dataset}:{c.split}' for _, c in rows]
    title = f'visual tokens per image, {family.name}' + (' (sizes from headers only)' if args.headers_only else '')
    table = Table(title=title)
    for col in ('dataset:split', 'policy', 'images', 'refused', 'low', 'mean', 'p95', 'max', 'tokens/epoch',
                'vs native'):
        table.add_column(col, justify='left' if col in ('dataset:split', 'policy') else 'right', no_wrap=True)
    for (p, c), name in zip(rows, names):
        table.add_row(name, p.mode, f'{c.images:,}', f'{len(c.refused):,}', f'{c.low_images:,}', f'{c.mean_tokens:,.0f}',
                      f'{c.p95_tokens:,.0f}', f'{c.max_tokens:,}', humanize(c.total_tokens), fmt_ratio(c.cost_vs_native))
    # Nothing is shortened to fit a narrow terminal (a split name or a count cut to "…" misleads):
    # the table keeps its natural width and the terminal wraps it.
    width = Measurement.get(console, console.options.update_width(10_000), table).maximum
    (Console(width=width, file=console.file) if width > console.width else console).print(table)
    console.print('policy: ' + '; '.join(sorted({p.describe() for p, _ in rows})), highlight=False)
    listed: dict[tuple[str, str], list] = {}
    for p, c in rows:
        if not c.refused or listed.get((c.dataset, c.split)) == c.refused:
            continue
        listed[(c.dataset, c.split)] = c.refused
        bad = [BadRow(i, reason) for i, reason in c.refused]
        path = write_bad_rows(bad_rows_path(args.settings, c.dataset, c.split), c.dataset, c.split, bad)
        total = c.images + len(c.refused)
        console.print(f'refused (not counted above; the run refuses them too), {p.mode}: '
                      + summary(f'{c.dataset}:{c.split}', total, bad, path), highlight=False, markup=False, soft_wrap=True)
