"""The paper's published numbers (arXiv 2510.18304, Tables 2-5) as a tidy table, for side-by-side reports.

Rows with training "none" are the zero-shot baselines. Values are accuracy in points as printed.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Optional

import pandas as pd

from ..vocabulary import INFERENCE_MODES, TRAINING_ARMS

TABLES_CSV = Path(__file__).parent / 'paper_tables.csv'

# The paper's column names -> registry entry names.
DATASETS = {'Subcellular': 'subcellular', 'Compound': 'compound', 'Cervical': 'cervical', 'WSI': 'wsi',
            'VQA-RAD': 'vqa-rad', 'PathVQA': 'path-vqa', 'SLAKE': 'slake'}
_RESOLUTIONS = {'No': 'none', 'Low-res': 'low', 'Native-res': 'native', 'Mixed-res': 'mixed'}

# Hub ids -> the paper's model names. The paper calls its LLaVA-OneVision "2B"; the hub has
# 0.5B and 7B LLaVA-OneVision-Qwen2 checkpoints only, and the 0.5B one is mapped here.
HUB_MODELS = {
    'Qwen/Qwen2-VL-2B-Instruct': 'Qwen2-VL-2B',
    'Qwen/Qwen2-VL-7B-Instruct': 'Qwen2-VL-7B',
    'OpenGVLab/InternVL2_5-2B': 'InternVL2.5-2B',
    'llava-hf/llava-onevision-qwen2-0.5b-ov-hf': 'LLaVA-OneVision-2B',
}


# Where a run compared with the paper necessarily differs from the paper's model.
MODEL_NOTES = {
    'LLaVA-OneVision-2B': 'the paper\'s "LLaVA-OneVision-2B" has no public checkpoint; its numbers stand beside '
                          'the 0.5B hub model (llava-hf/llava-onevision-qwen2-0.5b-ov-hf), a smaller model',
}
COMPAT_NOTE = ("the paper scored with its substring rule (`--compat`); strict scores are lower wherever "
               "outputs are verbose, hedged or negated")


def comparison_notes(model: str, mode: str) -> list[str]:
    """What differs between this run and the paper's numbers it is put beside."""
    name = paper_model(model)
    notes = [MODEL_NOTES[name]] if name in MODEL_NOTES else []
    if mode != 'compat':
        notes.append(COMPAT_NOTE)
    return notes


@lru_cache(maxsize=1)
def paper_table() -> pd.DataFrame:
    """Columns: model, training (none/low/native/mixed), inference (low/native/mixed), dataset, value."""
    wide = pd.read_csv(TABLES_CSV)
    tidy = wide.melt(id_vars=['model', 'training', 'inference'], var_name='dataset', value_name='value')
    unknown = set(tidy['dataset']) - set(DATASETS)
    if unknown:
        raise ValueError(f'{TABLES_CSV}: unknown dataset column(s) {sorted(unknown)}')
    tidy['dataset'] = tidy['dataset'].map(DATASETS)
    tidy['training'] = tidy['training'].map(_RESOLUTIONS)
    tidy['inference'] = tidy['inference'].map(_RESOLUTIONS)
    return tidy[['model', 'training', 'inference', 'dataset', 'value']].reset_index(drop=True)


def paper_model(model: str) -> Optional[str]:
    """The paper's name for a hub id (or a paper name), case-insensitive; None if the paper lacks it."""
    key = model.strip().rstrip('/').lower()
    names = {k.lower(): v for k, v in HUB_MODELS.items()} | {v.lower(): v for v in HUB_MODELS.values()}
    return names.get(key)


def paper_value(model: str, training: str, inference: str, dataset: str) -> Optional[float]:
    """The published number for one grid cell, or None when the paper has none for it."""
    if training not in TRAINING_ARMS or inference not in INFERENCE_MODES:
        raise ValueError(f'training must be one of {TRAINING_ARMS} and inference one of {INFERENCE_MODES}, '
                         f'got {training!r}, {inference!r}')
    name = paper_model(model)
    if name is None:
        return None
    t = paper_table()
    hit = t[(t.model == name) & (t.training == training) & (t.inference == inference)
            & (t.dataset == dataset.removeprefix('medres/'))]
    return float(hit['value'].iloc[0]) if len(hit) else None
