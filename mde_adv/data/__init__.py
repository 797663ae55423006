"""Data: NYU Depth v2 and procedural-rooms TFDS builders, transforms and the input pipeline.

Modules: `nyu_depth_v2` (builder `nyu_depth_v2_manual`) and `nyu_readers`; `procedural_rooms`
(builder `procedural_rooms`), `room_scene` (random scenes) and `rooms` (the NumPy renderer);
`features` (TFDS features readable without TensorFlow); `transforms` (spec §6); `pipeline`
(grain batches); `preview` (a PNG grid of samples); `builders` (dataset names → builders,
building with a record of the source files); `errors`. `import mde_adv` registers both
builders with TFDS (through `builders`).
"""
