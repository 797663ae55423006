"""The paper's study on NYU Depth v2 with N = Depth Anything V2 relative (affine-invariant
disparity), ViT-S by default (`--config.depth_net.encoder=dav2_vitb|dav2_vitl`); G, G_adv and
every evaluation as in configs/nyu/paper.py, but every score of N and N_adv is after per-image
least-squares scale-and-shift alignment to the ground truth in disparity (aligned depth clipped
to [min_depth, max_depth] = [1 mm, 10 m], NYU-v2's cap), every attack measures its loss after
the same alignment, and N_adv is fine-tuned on l_dif after it (`alignment.depth_range`). The
targeted table is left out (a target of 2×N(x) aligns back to N(x)).

Input size as configs/nyu/depth_anything_v2_metric.py (228×304 crops resized to 518×686
inside N). N is the released network, imported, not trained here; N_adv is fine-tuned from it:

    python -m mde_adv.import_depth_anything --size vits --kind relative \\
        --checkpoint depth_anything_v2_vits.pth --out ckpt/dav2_vits_relative
    python -m mde_adv.main --config configs/nyu/depth_anything_v2_relative.py \\
        --workdir runs/dav2_relative --config.data.manual_dir=/data/nyu \\
        --config.networks.N=ckpt/dav2_vits_relative --config.init.N_adv=ckpt/dav2_vits_relative
"""

from configs.nyu import depth_anything_v2_metric, paper


def get_config():
    c = paper.get_config()
    c.depth_net = dict(
        encoder="dav2_vits",
        kind="relative",
        min_depth=1e-3,
        max_depth=10.0,
        input_hw=depth_anything_v2_metric.INPUT_HW,
        dtype="float32",
    )
    c.train.depth_adv.learning_rate = depth_anything_v2_metric.FINE_TUNE_LEARNING_RATE
    c.eval.tables = [t for t in c.eval.tables if t != "targeted"]
    return c
