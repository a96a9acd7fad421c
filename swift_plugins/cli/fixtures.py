"""`medres fixtures list|build NAME DIR`: the offline stand-ins the demo, the tests and the README's
walkthrough use (tiny random-weight models of the real architectures, a small synthetic dataset)."""
from __future__ import annotations

from pathlib import Path

NAME = 'fixtures'

# name -> (what it is, how to use it). The builders are imported only when one runs (torch is slow to import).
FIXTURES = {
    'tiny-qwen2-vl': ('tiny random-weight Qwen2-VL (the real architecture and tokenizer ids, 56 MB)',
                      'point any qwen2-vl recipe at it with `-- --model {dir}` (the recipes name model_type and '
                      'template); with plain swift add --model_type qwen2_vl --template qwen2_vl'),
    'tiny-internvl': ("tiny random-weight InternVL, transformers' native layout (OpenGVLab/InternVL3-*-hf)",
                      'use it with --model {dir} --model_type internvl --template internvl_hf'),
    'tiny-llava-onevision': ('tiny random-weight LLaVA-OneVision (llava-hf layout)',
                             'use it with --model {dir} --model_type llava_onevision_hf --template llava_onevision_hf'),
    'toy-vqa': ('synthetic yes/no VQA: scan-like images at 3 sizes, 40 train / 16 test rows, in the {layout} layout',
                'register it with a YAML entry whose sources.local is this folder (README, "First run")'),
}


def register(sub) -> None:
    fx = sub.add_parser(NAME, help='build the offline stand-ins: tiny models, a toy dataset')
    verbs = fx.add_subparsers(dest='verb', required=True, metavar='list|build')
    ls = verbs.add_parser('list', help='the fixtures you can build')
    ls.set_defaults(run=run_list)
    b = verbs.add_parser('build', help='build one fixture into a folder (idempotent)',
                         description='; '.join(f'{k}: {v[0]}' for k, v in FIXTURES.items()))
    b.add_argument('name', choices=list(FIXTURES), metavar='NAME', help=', '.join(FIXTURES))
    b.add_argument('dir', help='folder to write (created; an identical earlier build is reused)')
    b.add_argument('--layout', choices=('jsonl', 'parquet'), default='jsonl', help='toy-vqa: the local layout to write')
    b.add_argument('--fixture-seed', type=int, default=0, help='seed of the random weights or images')
    b.set_defaults(run=run_build)


def run_list(args) -> int:
    for name, (what, _) in FIXTURES.items():
        print(f'{name:22} {what.format(layout="jsonl + images (or --layout parquet)")}')
    return 0


def build(name: str, out: Path, *, layout: str = 'jsonl', seed: int = 0) -> Path:
    from ..errors import UsageError
    if layout != 'jsonl' and name != 'toy-vqa':
        raise UsageError(f'--layout applies to toy-vqa only, not {name}')
    if name == 'tiny-qwen2-vl':
        from ..fixtures.tiny_qwen2_vl import TinyQwen2VLSpec, build_tiny_qwen2_vl
        return build_tiny_qwen2_vl(out, TinyQwen2VLSpec(seed=seed))
    if name == 'tiny-internvl':
        from ..fixtures.tiny_families import TinySpec, build_tiny_internvl
        return build_tiny_internvl(out, TinySpec(seed=seed))
    if name == 'tiny-llava-onevision':
        from ..fixtures.tiny_families import TinySpec, build_tiny_llava_onevision
        return build_tiny_llava_onevision(out, TinySpec(seed=seed))
    from ..fixtures.toy_dataset import ToySpec, build_toy_vqa
    return build_toy_vqa(out, ToySpec(layout=layout, seed=seed))


def run_build(args) -> int:
    out = build(args.name, Path(args.dir), layout=args.layout, seed=args.fixture_seed)
    what, use = FIXTURES[args.name]
    print(f'built {args.name} in {out}: {what.format(layout=args.layout)}')
    print(use.format(dir=args.dir))
    return 0
