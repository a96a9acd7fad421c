"""What the plugin registers with ms-swift: datasets, resolution-aware templates, the epoch callback."""
from __future__ import annotations

from typing import Optional

from .registry import Entry, load_registry


def dataset_meta(entry: Entry):
    from swift.dataset import DatasetMeta

    from .loader import MedresDatasetLoader

    # Only `dataset_name`: giving the hub ids too would make ms-swift route plain
    # `--dataset <hub id>` through medres and shadow its own registrations of the same ids.
    return DatasetMeta(
        dataset_name=entry.registered_name,
        split=[entry.default_split],
        loader=MedresDatasetLoader,
        tags=['medres', entry.modality, entry.task.kind, 'multi-modal'],
        help=f'{entry.title} ({entry.modality}, {entry.task.kind}); splits: {", ".join(entry.splits)}',
    )


def register_datasets(extra: Optional[list] = None) -> list[str]:
    from swift.dataset import register_dataset

    names = []
    for entry in load_registry(extra).values():
        register_dataset(dataset_meta(entry), exist_ok=True)
        names.append(entry.registered_name)
    return names


def register_callbacks() -> None:
    from swift.callbacks import callbacks_map

    from .epoch import CALLBACK_NAME, MedresEpochCallback
    callbacks_map[CALLBACK_NAME] = MedresEpochCallback


def register_all() -> None:
    from .registry import RegistryError
    from .templates import register_templates

    try:
        register_datasets()
    except RegistryError as e:
        # A user's registry file is wrong: say which file and field, not a traceback through ms-swift.
        raise SystemExit(f'medres: registry error: {e}') from None
    register_templates()
    register_callbacks()
