"""`medres demo`: the offline tiny end-to-end run."""
from __future__ import annotations

from pathlib import Path

NAME = 'demo'


def register(sub) -> None:
    d = sub.add_parser(NAME, help='offline tiny end-to-end: train at native and low resolution, infer')
    d.add_argument('--workdir', default='medres-demo', help='where models, data and outputs go')
    d.add_argument('--max-steps', type=int, default=4, help='training steps per arm')
    d.set_defaults(run=run)


def run(args) -> int:
    from ..demo import run_demo
    run_demo(Path(args.workdir), args.env, max_steps=args.max_steps)
    return 0
