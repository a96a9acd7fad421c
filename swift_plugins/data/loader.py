"""ms-swift dataset loader for registry entries: `medres/<name>[:split[/split...]][#n]`.

ms-swift's own loader reads a registered id's train split only. This one maps the dataset
syntax's subsets to the entry's splits, so every split is reachable:
`--dataset medres/path-vqa` (train), `--val_dataset medres/path-vqa:validation`,
`swift infer --val_dataset medres/path-vqa:test`.
"""
from __future__ import annotations

from pathlib import Path

from swift.dataset import DatasetLoader, DatasetMeta, SubsetDataset, register_dataset
from swift.utils import get_logger

from ..resolution.families import run_family, run_predicts
from ..resolution.policy import ResolutionPolicy
from ..settings import Settings
from .images import raise_pil_limit
from .registry import Entry, get_entry, load_registry
from .rows import RowConverter
from .sources import check_jsonl_files, expected_rows, resolve_source
from .spec import DatasetSpec

logger = get_logger()


class MedresDatasetLoader(DatasetLoader):

    def load(self, dataset_syntax=None, dataset_meta=None, *, use_hf=None):
        # The ms-swift boundary: configuration arrives through the environment of this process.
        settings, policy = Settings.from_env(), ResolutionPolicy.from_env()
        raise_pil_limit(settings.max_image_pixels)
        entry = get_entry(dataset_meta.dataset_name, settings.registry_dirs)
        splits = DatasetSpec.from_parts(entry.name, dataset_syntax.subsets).resolve(entry)
        source = resolve_source(entry, use_hf, settings)
        # ms-swift tags rows with this string; make it the real source, not the registered name.
        dataset_syntax.dataset = source.dataset_id
        logger.info(f'medres: loading {entry.registered_name} splits {splits} from {source.describe()}')
        base_dir = source.dataset_id if source.kind.startswith('local') else None
        if base_dir:
            check_jsonl_files(Path(base_dir))
        # The family of the template ms-swift built for this run (None outside one): images it
        # cannot encode are refused (or padded) here, before training or inference starts.
        family = run_family()
        parts = []
        for split in splits:
            converter = RowConverter(entry, split, settings, policy, base_dir, family=family,
                                     expected=expected_rows(entry, split, source), source=source.describe(),
                                     predicts=run_predicts())
            subset = SubsetDataset(subset=entry.sources.subset, split=[entry.splits[split].hub_split],
                                   preprocess_func=converter)
            parts.append(self._load_repo_dataset(source.dataset_id, subset, use_hf=source.use_hf,
                                                 revision=source.revision))
        return self.concat_datasets(parts)


def dataset_meta(entry: Entry) -> DatasetMeta:
    # Only `dataset_name`: giving the hub ids too would make ms-swift route plain
    # `--dataset <hub id>` through medres and shadow its own registrations of the same ids.
    return DatasetMeta(
        dataset_name=entry.registered_name,
        split=[entry.default_split],
        loader=MedresDatasetLoader,
        tags=['medres', entry.modality, entry.task.kind, 'multi-modal'],
        help=f'{entry.title} ({entry.modality}, {entry.task.kind}); splits: {", ".join(entry.splits)}',
    )


def register_datasets(settings: Settings) -> list[str]:
    """Register every registry entry with ms-swift as `medres/<name>` (and let PIL open what
    `MEDRES_MAX_IMAGE_PIXELS` admits, for plain jsonl rows too)."""
    raise_pil_limit(settings.max_image_pixels)
    names = []
    for entry in load_registry(settings.registry_dirs).values():
        register_dataset(dataset_meta(entry), exist_ok=True)
        names.append(entry.registered_name)
    return names
