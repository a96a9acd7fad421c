"""The resolution probe: a synthetic dataset on which tiny CPU models show the paper's pattern.

`generator` writes the `medres/probe` dataset (a fine cue only native resolution resolves, a
coarse cue that survives downsampling but is right only part of the time); `config` holds the
probe's presets (data, tiny model, training) and the flags its runs add to the recipes; `pattern`
states the paper's claims as paired tests on the grid. Running it is `medres study`'s job
(`swift_plugins.study.demo`): the probe is a study on this dataset, not a pipeline of its own.
"""
