"""Trains the N and G that configs/default.py ships with (mde_adv/pretrained/default/).

    python -m mde_adv.main --config configs/default_networks.py --workdir runs/default_networks
    python -m mde_adv.pretrained --workdir runs/default_networks   # copies them into the package

The paper builds on the N and G of its authors' earlier works [9, 10]; the default study does
the same with these, and trains G_adv and N_adv itself. Same data, networks and losses as
configs/default.py, but all 640 training rooms of `procedural_rooms/small` (the study's 320
are its first half) and configs/default.py's schedules for N and G (N: 70 epochs, lr 3e-4
then 3e-5 from epoch 56, precise BN over 160 batches; G: 4 epochs), with the clean test scores
logged every 5 epochs for N and 2 for G (the learning curves, in
`<workdir>/<stage>/logs/metrics.jsonl`; `python -m benchmarks.learning_curve`).
"""

from configs import default


def get_config():
    c = default.get_config()
    c.stages = (
        "data",
        "train_depth",
        "train_saliency",
        "train_saliency_drn_d_38",
        "train_saliency_drn_d_54",
    )
    c.data.pipeline.name = "procedural_rooms/small"  # 240×320 renders, 640 train / 100 test
    for name in c.networks:  # trained here from a random initialisation
        c.networks[name] = ""
        c.init[name] = ""
    # configs/default.py's schedules for N and G, with the learning curves logged
    c.train.depth.update(eval_every=400, log_every=40, checkpoint_every=400)
    c.train.saliency.update(eval_every=160, log_every=20, checkpoint_every=160)
    return c
