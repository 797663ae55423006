"""The paper's settings on NYU Depth v2 (accelerators): N = ResNet-50, G = DRN-D-22, 228×304.

Needs the manual download of the csv + PNG distribution in `--config.data.manual_dir`
(see README, "NYU Depth v2"). Spec §7: Adam lr 1e-4, coupled L2 1e-4; N 20 epochs, lr ×0.1
every 5 epochs, batch 8 per device; G λ = 5 with target N(x); G_adv λ = 1 with the ground
truth, 60 epochs (Algorithm 1); N_adv as N on clean and adversarial inputs.
Encoders start from ImageNet weights imported with mde_adv.import_torch (`--config.init.N=...`).
"""

from configs import default
from mde_adv import evaluate


def get_config():
    c = default.get_config()
    c.data.manual_dir = ""  # required: the folder with nyu_data.zip (or its extracted files)
    c.data.pipeline.name = "nyu_depth_v2_manual/csv_png"
    c.data.pipeline.resize_hw = (240, 320)
    c.data.pipeline.crop_hw = (228, 304)
    c.data.pipeline.depth_hw = (114, 152)
    c.data.pipeline.worker_count = 8
    c.data.pipeline.read_threads = 8
    for name in c.networks:  # the default study's shipped N and G are of another size
        c.networks[name] = ""
        c.init[name] = ""
    c.depth_net = dict(encoder="resnet50", width=1.0, dtype="float32", up_projection="auto")
    c.saliency_net = dict(encoder="drn_d_22", width=1.0, dtype="float32", up_projection="auto")
    # spec §7: 8 examples per device, so the global batch is 8 × jax.device_count()
    paper = dict(learning_rate=1e-4, per_device_batch_size=8, log_every=50, checkpoint_every=2000)
    c.train = dict(
        depth=default.optimiser(**paper, epochs=20.0, lr_decay_every_epochs=5),
        saliency=default.optimiser(
            **paper, epochs=20.0, sparsity_weight=5.0, saliency_target="depth_net"
        ),
        saliency_adv=default.optimiser(
            **paper, epochs=60.0, sparsity_weight=1.0, saliency_target="ground_truth"
        ),
        depth_adv=default.optimiser(**paper, epochs=20.0, lr_decay_every_epochs=5),
    )
    c.table4_train = {}  # Table 4's G_adv variants train exactly like G_adv
    c.eval = evaluate.default_eval_config()  # all 654 test images, every table and figure
    return c
