"""The paper's study on NYU Depth v2 with N = Depth Anything V2 metric (Hypersim, indoor,
max depth 20 m), ViT-S by default (`--config.depth_net.encoder=dav2_vitb|dav2_vitl`); G, G_adv
and every evaluation as in configs/nyu/paper.py. Metric outputs are metres: evaluated like N.

Input size: the data pipeline's 228×304 crops are resized (bilinear) to 518×686 inside N,
the released models' own rule (short side 518, the other side at the same aspect ratio
rounded to a multiple of 14); the output is resized to the 114×152 target. N is the released
network, imported, not trained here; N_adv is fine-tuned from it:

    python -m mde_adv.import_depth_anything --size vits --kind metric --max-depth 20 \\
        --checkpoint depth_anything_v2_metric_hypersim_vits.pth --out ckpt/dav2_vits_hypersim
    python -m mde_adv.main --config configs/nyu/depth_anything_v2_metric.py --workdir runs/dav2 \\
        --config.data.manual_dir=/data/nyu --config.networks.N=ckpt/dav2_vits_hypersim \\
        --config.init.N_adv=ckpt/dav2_vits_hypersim
"""

from configs.nyu import paper

INPUT_HW = (518, 686)  # 228×304 at short side 518, long side a multiple of 14
FINE_TUNE_LEARNING_RATE = 5e-6  # Depth Anything V2's fine-tuning rate of the encoder


def get_config():
    c = paper.get_config()
    c.depth_net = dict(
        encoder="dav2_vits", kind="metric", max_depth=20.0, input_hw=INPUT_HW, dtype="float32"
    )
    c.train.depth_adv.learning_rate = FINE_TUNE_LEARNING_RATE
    return c
