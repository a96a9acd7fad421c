"""medres plugin for stock ms-swift.

    swift sft   --external_plugins "$(medres plugin-path)" --dataset medres/vqa-rad ...
    swift infer --external_plugins "$(medres plugin-path)" --val_dataset medres/vqa-rad:test ...

It only registers; everything it registers lives in the `swift_plugins` package. It sits alone
in its folder because ms-swift puts a plugin's folder at the front of `sys.path`.
"""
from swift_plugins.register import register_datasets

register_datasets()
