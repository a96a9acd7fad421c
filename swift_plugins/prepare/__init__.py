"""`medres prepare <dataset>`: public raw downloads -> prepared datasets the registry loads.

One converter per dataset, named for it (`subcellular`, `compound`, `cervical`, `wsi`); each reads
its prompt, label set and channel mapping from the dataset's registry entry and writes through
`common.run` (atomic, manifest, idempotent). `register_converter` adds one.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from ..data.registry import get_entry
from ..errors import PrepareError
from ..settings import Settings
from ..vocabulary import PAPER_SEED
from .cervical import CervicalConverter
from .common import Converter, default_workers, run
from .compound import CompoundConverter
from .subcellular import SubcellularConverter
from .wsi import WsiVqaConverter

CONVERTERS: dict[str, Converter] = {}


def register_converter(converter: Converter) -> Converter:
    CONVERTERS[converter.name] = converter
    return converter


for _converter in (SubcellularConverter(), CompoundConverter(), CervicalConverter(), WsiVqaConverter()):
    register_converter(_converter)


def converter_options(namespace: argparse.Namespace, exclude=()) -> dict:
    """Parsed flags as converter options (paths as text, as the manifest records them)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(namespace).items() if k not in exclude}


def converter_defaults(converter: Converter) -> dict:
    """The converter's options at the defaults its `medres prepare` flags give (one home for them)."""
    parser = argparse.ArgumentParser(add_help=False)
    converter.add_arguments(parser)
    return converter_options(parser.parse_known_args([])[0])


def prepare(name: str, raw, out=None, *, seed: int = PAPER_SEED, on_error: str = 'error', force: bool = False,
            settings: Optional[Settings] = None, workers: Optional[int] = None, **options) -> dict:
    """Python entry point of `medres prepare`; returns the manifest. `workers`: processes decoding and
    writing images (default: the cores); the output is the same for any number."""
    settings = settings or Settings.from_env()  # the Python API is a boundary, as the CLI
    if name not in CONVERTERS:
        raise PrepareError(f'medres prepare: no converter for {name!r} (converters: {", ".join(sorted(CONVERTERS))})')
    converter = CONVERTERS[name]
    options = {**converter_defaults(converter), **options}
    return run(converter, get_entry(name, settings.registry_dirs), Path(raw), Path(out) if out else None, seed=seed,
               on_error=on_error, options=options, force=force, settings=settings,
               workers=default_workers() if workers is None else workers)
