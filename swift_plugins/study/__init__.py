"""`medres study`: the paper's experiment as one resumable command.

`model` resolves what `--model` names (a recipe model key or a folder) and reads its configuration;
`plan` states what each training arm costs before anything runs (samples, optimizer steps, visual
tokens, FLOPs); `arms` trains the arms through the recipes with `medres train`; `run` chains arms,
the train x inference grid and the optional zero-shot sweep; `report` writes `report/index.html`
and `report.md`; `demo` is the embedded default (the tiny model on the probe dataset).
"""
