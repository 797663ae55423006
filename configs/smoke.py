"""configs/default.py in minutes: tiny renders (48×64), tiny networks, a few steps each."""

from configs import default


def get_config():
    c = default.get_config()
    c.data.pipeline.name = "procedural_rooms/tiny"  # 48×64 renders, 64 train / 16 test
    c.data.pipeline.resize_hw = (36, 48)
    c.data.pipeline.crop_hw = (32, 40)
    c.data.pipeline.depth_hw = (16, 20)
    c.data.pipeline.global_batch_size = 4
    c.depth_net.width = 0.125
    c.saliency_net.width = 0.125
    c.train_attack.t_max = 3
    c.train_attack.steps_range = (1, 3)
    for task in c.train:
        c.train[task].num_steps = 4
        c.train[task].batch_size = 4
        c.train[task].log_every = 2
        c.train[task].checkpoint_every = 2
    return c
