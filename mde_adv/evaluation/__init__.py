"""The pieces of the evaluation stage (`mde_adv.evaluate.run`).

`config` (the paper's settings, checks), `methods` (N(x*), N(x*⊗G(x)), ... and the attacked
functions), `plan` (config sections → attack groups), `compute` (per-batch attacks and
metrics), `results` (per-image rows, aggregation, files), `findings` (the report's summary
derived from the numbers) and `figures` (the report's PNGs).
"""
