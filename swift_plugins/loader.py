"""ms-swift dataset loader for registry entries: `medres/<name>[:split[/split...]][#n]`.

ms-swift's own loader reads a registered id's train split only. This one maps the dataset
syntax's subsets to the entry's splits, so every split is reachable:
`--dataset medres/path-vqa` (train), `--val_dataset medres/path-vqa:validation`,
`swift infer --val_dataset medres/path-vqa:test`.
"""
from __future__ import annotations

from swift.dataset import DatasetLoader, SubsetDataset
from swift.utils import get_logger

from .registry import RegistryError, get_entry
from .rows import RowConverter
from .sources import resolve_source

logger = get_logger()


class MedresDatasetLoader(DatasetLoader):

    def load(self, dataset_syntax=None, dataset_meta=None, *, use_hf=None):
        entry = get_entry(dataset_meta.dataset_name)
        splits = dataset_syntax.subsets or [entry.default_split]
        unknown = [s for s in splits if s not in entry.splits]
        if unknown:
            raise RegistryError(f'{entry.registered_name}: unknown split(s) {unknown}; '
                                f'{entry.path} defines {sorted(entry.splits)}')
        source = resolve_source(entry, use_hf)
        # ms-swift tags rows with this string; make it the real source, not the registered name.
        dataset_syntax.dataset = source.dataset_id
        logger.info(f'medres: loading {entry.registered_name} splits {splits} from {source.describe()}')
        base_dir = source.dataset_id if source.kind.startswith('local') else None
        parts = []
        for split in splits:
            subset = SubsetDataset(subset=entry.sources.subset, split=[entry.splits[split].hub_split],
                                   preprocess_func=RowConverter(entry, split, base_dir))
            parts.append(self._load_repo_dataset(source.dataset_id, subset, use_hf=source.use_hf,
                                                 revision=source.revision))
        return self.concat_datasets(parts)
