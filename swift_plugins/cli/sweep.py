"""`medres sweep`: one model over several inference resolutions (the paper's section 3.5)."""
from __future__ import annotations

from pathlib import Path

from ..vocabulary import PAPER_LOW_PIXELS
from .common import add_bootstrap_args, model_ref

NAME = 'sweep'
QWEN_TOKEN_PIXELS = 28 * 28
# Low budgets of 256, 512, 1280 (the paper's low) and 2560 Qwen2-VL tokens; native is always added.
DEFAULT_BUDGETS = (256 * QWEN_TOKEN_PIXELS, 512 * QWEN_TOKEN_PIXELS, PAPER_LOW_PIXELS, 2560 * QWEN_TOKEN_PIXELS)


def register(sub) -> None:
    sw = sub.add_parser(NAME, help='zero-shot: one model over inference resolutions; recommends one',
                        usage='medres sweep --model MODEL --dataset NAME[:SPLIT] [options] [-- swift infer flags]')
    sw.add_argument('--model', required=True, help='hub id or checkpoint folder')
    sw.add_argument('--dataset', required=True, metavar='NAME[:SPLIT]', help='default split: validation, else test')
    sw.add_argument('--pixels', nargs='+', type=int, default=list(DEFAULT_BUDGETS),
                    help='low budgets to try, in pixels (native is always added)')
    sw.add_argument('--workdir', default='medres-sweep', help='cells, table and plot go here; rerun to resume')
    sw.add_argument('--compat', action='store_true', help="score with the paper's substring rules")
    sw.add_argument('--redo', action='store_true', help='recompute finished settings too')
    add_bootstrap_args(sw)
    sw.set_defaults(run=run, swift_args=[])


def run(args) -> int:
    from rich.markdown import Markdown

    from ..eval.sweep import markdown, run_sweep
    from .common import console

    rows, best, cheapest, files = run_sweep(model_ref(args.model), args.dataset, Path(args.workdir).resolve(),
                                            args.pixels, args.swift_args, 'compat' if args.compat else 'strict',
                                            args.redo, args.n_boot, args.bootstrap_seed, settings=args.settings,
                                            env=args.env)
    console.print(Markdown(markdown(rows, best, cheapest)))
    console.print('wrote: ' + ', '.join(str(f) for f in files.values()), highlight=False, soft_wrap=True)
    return 0
