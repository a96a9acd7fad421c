"""The resolution probe: a synthetic dataset on which tiny CPU models show the paper's pattern.

`generator` writes the `medres/probe` dataset (a fine cue only native resolution resolves, a
coarse cue that survives downsampling but is right only part of the time); `arms` trains the
low / native / mixed arms through the project's recipes; `run` drives them and `medres grid`
(`medres probe`); `pattern` states the paper's claims as paired tests on the grid.
"""
