"""medres plugin for stock ms-swift; it only registers.

    swift sft   --external_plugins "$(medres plugin-path)" --dataset medres/vqa-rad ...
    swift infer --external_plugins "$(medres plugin-path)" --val_dataset medres/vqa-rad:test ...

Registers the `medres/<name>` datasets, the resolution-aware templates of the supported model
families, the `medres_epoch` callback, and the hook that records each run's resolution policy.
It sits alone in its folder because ms-swift puts a plugin's folder at the front of `sys.path`.
"""
from swift_plugins.data.loader import register_datasets
from swift_plugins.errors import exit_on_error, install_excepthook
from swift_plugins.resolution.epoch import register_epoch_callback
from swift_plugins.resolution.swift_args import register_argument_hooks
from swift_plugins.resolution.templates import register_templates
from swift_plugins.settings import Settings

install_excepthook('medres')
with exit_on_error('medres'):
    register_datasets(Settings.from_env())
    register_templates()
    register_epoch_callback()
    register_argument_hooks()
