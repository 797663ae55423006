"""The whole study on the embedded procedural-rooms dataset, sized for a 2-core CPU.

Same code and structure as the paper settings (configs/nyu/*.py), smaller: ResNet-18 and
DRN-D-22 at a quarter of the width, 56×76 network inputs (the paper's 228×304 scaled by 1/4),
short schedules at a higher learning rate. Override any field on the command line, e.g.
`--config.train.depth.num_steps=500`.
"""

import ml_collections

from mde_adv import evaluate

STAGES = (
    "data",
    "train_depth",
    "train_saliency",
    "train_saliency_adv",
    "train_depth_adv",
    "train_saliency_adv_drn_d_38",
    "train_saliency_adv_drn_d_54",
    "evaluate",
    "report",
)


def optimiser(**overrides) -> dict:
    """Spec §7: Adam (0.9, 0.999), lr 1e-4, coupled L2 weight decay 1e-4."""
    return dict(
        dict(
            learning_rate=1e-4,
            weight_decay=1e-4,
            adam_b1=0.9,
            adam_b2=0.999,
            adam_eps=1e-8,
            lr_decay_factor=0.1,
            lr_decay_every_epochs=0,
            epochs=1.0,
            num_steps=0,
            batch_size=8,
            log_every=10,
            checkpoint_every=100,
        ),
        **overrides,
    )


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.stages = STAGES
    c.data = dict(
        manual_dir="",  # NYU-v2 only: the folder holding the manually downloaded files
        pipeline=dict(
            name="procedural_rooms/small",  # 240×320 renders, 800 train / 100 test
            data_dir="",  # empty: <workdir>/data
            train_split="train",
            eval_split="test",
            resize_hw=(60, 80),  # the paper's 240×320 / 4
            crop_hw=(56, 76),  # network input (paper 228×304)
            depth_hw=(28, 38),  # training target = N's output size, crop / 2
            global_batch_size=8,
            seed=0,
            worker_count=0,
            read_threads=2,
        ),
    )
    c.depth_net = dict(encoder="resnet18", width=0.25, dtype="float32", up_projection="auto")
    c.saliency_net = dict(encoder="drn_d_22", width=0.25, dtype="float32", up_projection="auto")
    c.parallel = dict(mode="pmap")  # or "jit" (jit with NamedSharding)
    c.distributed = dict(enabled=False, coordinator_address="", num_processes=-1, process_id=-1)
    # Algorithm 1's attack for N_adv and G_adv: IFGSM, α = 1, ℓ1 loss, ε ~ U(0.01, 0.3),
    # T ~ U{1..10}, half of the examples adversarial.
    c.train_attack = dict(
        method="ifgsm",
        norm="linf",
        loss="l1",
        space="normalised",
        alpha=1.0,
        t_max=10,
        p_adversarial=0.5,
        eps_range=(0.01, 0.3),
        steps_range=(1, 10),
    )
    # Schedules sized for the 15-minute CPU budget: the adversarial tasks run Algorithm 1's
    # attack (up to 10 IFGSM iterations per example) and cost ~25× a clean step here.
    c.train = dict(
        depth=optimiser(learning_rate=1e-3, epochs=6.0),
        saliency=optimiser(
            learning_rate=1e-3, epochs=3.0, sparsity_weight=5.0, saliency_target="depth_net"
        ),
        saliency_adv=optimiser(
            learning_rate=1e-3, epochs=0.5, sparsity_weight=1.0, saliency_target="ground_truth"
        ),
        depth_adv=optimiser(learning_rate=1e-3, epochs=0.5),
    )
    c.table4_train = dict(epochs=0.2)  # G_adv with DRN-D-38 / DRN-D-54 encoders (Table 4)
    names = ("N", "G", "G_adv", "N_adv", "G_adv_drn_d_38", "G_adv_drn_d_54")
    c.init = {n: "" for n in names}  # variables_io checkpoints a network starts from
    c.networks = {n: "" for n in names}  # given networks: their training stage is skipped
    # The paper's evaluation (mde_adv/evaluation/config.py), shrunk for the CPU: 32 test
    # images, Fig. 5 at T ∈ {1, 2, 5, 10}.
    c.eval = evaluate.default_eval_config()
    c.eval.max_images = 32
    c.eval.batch_size = 8
    c.eval.fig5.steps = [1, 2, 5, 10]
    return c
