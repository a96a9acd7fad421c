"""`medres probe`: the resolution probe, i.e. `medres study` on the synthetic probe dataset."""
from __future__ import annotations

from ..errors import EXIT_CHECK_FAILED
from ..vocabulary import Env

NAME = 'probe'


def register(sub) -> None:
    pr = sub.add_parser(NAME, help='offline benchmark: `medres study` of tiny models on a synthetic dataset, the '
                                   'paper\'s pattern checked')
    pr.add_argument('--quick', action='store_true', help='a few steps on 64 images: checks the pipeline, not the pattern')
    pr.add_argument('--replicate-seed', type=int, default=0,
                    help='one replicate of the probe: seeds the generated data, the model\'s initialisation and the '
                         'training order together (default 0)')
    pr.add_argument('--workdir', default='medres-probe', help='arms, grid and report go here; rerun to resume')
    pr.add_argument('--data-home', help=f'where the generated images go (default: ${Env.DATA_HOME})')
    pr.add_argument('--n-boot', type=int, default=2000, help='bootstrap resamples for the CIs (default 2000)')
    pr.add_argument('--sweep', action='store_true', help='add the zero-shot sweep of the untrained model')
    pr.add_argument('--check', action='store_true', help=f'exit {EXIT_CHECK_FAILED} when the pattern does not hold')
    pr.set_defaults(run=run)


def run(args) -> int:
    from .study import run_demo
    return run_demo(args, 'quick' if args.quick else 'default', args.replicate_seed, workdir=args.workdir,
                    data_home=args.data_home, check=args.check, sweep=args.sweep)
