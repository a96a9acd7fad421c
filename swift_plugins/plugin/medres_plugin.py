"""medres plugin for stock ms-swift.

    swift sft   --external_plugins "$(medres plugin-path)" --dataset medres/vqa-rad ...
    swift infer --external_plugins "$(medres plugin-path)" --val_dataset medres/vqa-rad:test ...

It only registers (the `medres/<name>` datasets, resolution-aware templates for the supported
model families, the `medres_epoch` callback); everything lives in the `swift_plugins` package.
It sits alone in its folder because ms-swift puts a plugin's folder at the front of `sys.path`.
"""
from swift_plugins.register import register_all

register_all()
