"""configs/default.py in minutes: tiny renders (48×64), tiny networks, a few steps each; it
trains every network itself (the shipped N and G are of the default size)."""

from configs import default
from mde_adv import xla_flags


def get_config():
    c = default.get_config()
    # a pipeline check of tiny programs: compiling dominates, and these flags compile them
    # 2-3× faster (mde_adv/xla_flags.py)
    c.xla_flags = " ".join(xla_flags.FAST_COMPILE)
    c.data.pipeline.name = "procedural_rooms/tiny"  # 48×64 renders, 64 train / 16 test
    c.data.pipeline.resize_hw = (36, 48)
    c.data.pipeline.crop_hw = (32, 40)
    c.data.pipeline.depth_hw = (16, 20)
    c.data.pipeline.global_batch_size = 4
    c.depth_net.width = 0.125
    c.saliency_net.width = 0.125
    for name in c.networks:
        c.networks[name] = ""
        c.init[name] = ""
    # Table 4's G_adv from scratch: the G of their encoders train by the same code as G
    # and no robustness card (tests/test_experiment.py runs it on the smoke workdir)
    c.stages = tuple(
        s for s in c.stages if not s.startswith("train_saliency_drn_d_") and s != "robustness"
    )
    c.train_attack.t_max = 3
    c.train_attack.steps_range = (1, 3)
    for task in c.train:
        c.train[task].num_steps = 4
        c.train[task].batch_size = 4
        c.train[task].log_every = 2
        c.train[task].checkpoint_every = 2
    c.train.depth.eval_every = 2  # the learning-curve hook
    c.train.depth.warmup_epochs = 1 / 16  # one of the 4 steps (16 steps per epoch here)
    c.train.depth.precise_bn_batches = 2  # the precise-BN hook (configs/default.py: 160)
    c.train.saliency.eval_every = 2
    c.eval.max_images = 4
    c.eval.batch_size = 4
    for section in ("table1", "table2", "noise", "defence_aware"):
        c.eval[section].eps = [0.0, 0.1]
    c.eval.fig4.eps = [0.0, 0.1]
    c.eval.fig5.steps = [1, 2]
    c.eval.table3.losses = ["l1", "l_dif"]
    for section in (
        "table2",
        "table3",
        "table4",
        "fig6_7",
        "attack_variants",
        "salient_regions",
        "targeted",
    ):
        c.eval[section].steps = 2
    c.eval.fig6_7.images = 2
    # the card at this size (run by tests/test_experiment.py as a stage of the smoke workdir)
    c.robustness.subjects = ("N(x)", "N(x⊗G_adv(x))")
    c.robustness.threat_models = (dict(norm="linf", space="normalised", eps=(0.1,)),)
    c.robustness.max_images = 4
    c.robustness.batch_size = 4
    c.robustness.apgd.update(steps=2, restarts=1)
    c.robustness.square.steps = 3
    c.robustness.ifgsm.steps = 2
    c.robustness.diagnostics.steps = (1,)
    return c
