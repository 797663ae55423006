"""The whole study on the embedded procedural-rooms dataset, sized for a 2-core CPU.

Same code and structure as the paper settings (configs/nyu/*.py), smaller: ResNet-18 and
DRN-D-22 at 1/4 of the width, 56×76 network inputs (the paper's 228×304 scaled by 1/4).
As the paper takes N and G from its authors' earlier works, this study takes them from the
package (mde_adv/pretrained/default: N, G and Table 4's G with DRN-D-38/54 encoders, trained
by configs/default_networks.py) and trains G_adv (Algorithm 1) and N_adv itself, starting from
G and N (adversarial fine-tuning: a from-scratch schedule does not fit the 15-minute budget),
and Table 4's G_adv the same way from the G of their encoders. Train N and G too with
`--config.networks.N= --config.networks.G=`. Override any field on the command line, e.g.
`--config.train.depth_adv.epochs=2`.
"""

import ml_collections

from mde_adv import evaluate, pretrained, robustness

STAGES = (
    "data",
    "train_depth",
    "train_saliency",
    "train_saliency_drn_d_38",
    "train_saliency_drn_d_54",
    "train_saliency_adv",
    "train_depth_adv",
    "train_saliency_adv_drn_d_38",
    "train_saliency_adv_drn_d_54",
    "evaluate",
    "robustness",
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
            lr_schedule="step",  # spec §7's step decay, or "cosine" (warm-up, then to 0)
            warmup_epochs=0.0,  # "cosine" only
            epochs=1.0,
            num_steps=0,
            batch_size=8,  # global batch: examples per step over all devices
            per_device_batch_size=0,  # > 0: the global batch is this × the number of devices
            log_every=10,
            checkpoint_every=100,
            eval_every=0,  # clean test scores every k steps (the learning curve); 0: never
            # > 0: after the last step, BN statistics averaged over this many training batches
            # (mde_adv.train.precise_bn) instead of the running ones; 0: the running ones
            precise_bn_batches=0,
        ),
        **overrides,
    )


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.xla_flags = ""  # appended to XLA_FLAGS before JAX starts (mde_adv.main)
    c.stages = STAGES
    c.data = dict(
        manual_dir="",  # NYU-v2 only: the folder holding the manually downloaded files
        pipeline=dict(
            name="procedural_rooms/study",  # 240×320 renders, 320 train / 100 test
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
        sampler="bernoulli",  # or "paired": one of each pair adversarial (mde_adv.train.steps)
    )
    # N and G: the schedules of the shipped networks (configs/default_networks.py, used when
    # this study trains them). G_adv and N_adv: adversarial fine-tuning of G and N sized for the
    # 15-minute CPU budget (Algorithm 1's attack, up to 10 IFGSM iterations per example, makes
    # a step ~5× a clean one), at a lower learning rate that keeps what G and N learned.
    # N (measured here, README "Results"): lr 1e-3 with a 2-epoch warm-up and a cosine decay
    # to 0 over 200 epochs, then precise BN (statistics averaged over 160 training batches at
    # the final weights) instead of the running ones, which move the eval-mode RMSE by ±0.03
    # between checkpoints. Its learning curve is still falling at 100 epochs (0.757); the step
    # schedule at lr 3e-4 stalled at 0.83 and at lr 1e-3 was fragile (stuck at the layout
    # prior for 3,000 steps in one run); width 1/4 (3/8 gave 0.770 at 70 epochs and makes every
    # attack ~2.6× costlier, too slow for the 15-minute study).
    c.train = dict(
        depth=optimiser(
            learning_rate=1e-3,
            lr_schedule="cosine",
            warmup_epochs=2.0,
            epochs=200.0,
            precise_bn_batches=160,
        ),
        # λ = 2.5, not the ICCV code's 5: measured here, G's mask collapses to a uniform level,
        # near 0 at λ = 5 (mean 0.023 after 160 steps, N(x⊗G(x)) worse than a constant depth),
        # dim at λ = 4 (mean 0.30, no pixel above 0.5) and near 1 at λ = 1 (mean 0.98); at
        # λ = 2.5 it keeps about half of the pixels (share above 0.5 ≈ mean ≈ 0.5).
        saliency=optimiser(
            learning_rate=1e-3, epochs=4.0, sparsity_weight=2.5, saliency_target="depth_net"
        ),
        saliency_adv=optimiser(
            learning_rate=3e-4, epochs=2.0, sparsity_weight=1.0, saliency_target="ground_truth"
        ),
        depth_adv=optimiser(learning_rate=3e-4, epochs=2.0),
    )
    # Table 4's G and G_adv with DRN-D-38 / DRN-D-54 encoders train exactly like G and G_adv
    # (the G are shipped, their G_adv fine-tuned from them here), so that the three encoders
    # are compared on equal terms.
    c.table4_train = {}
    names = (
        "N",
        "G",
        "G_drn_d_38",
        "G_drn_d_54",
        "G_adv",
        "N_adv",
        "G_adv_drn_d_38",
        "G_adv_drn_d_54",
    )
    # variables_io checkpoints a network starts from, and given networks (stage skipped)
    c.init = {n: "" for n in names}
    c.init.G_adv = str(pretrained.path("G"))
    c.init.N_adv = str(pretrained.path("N"))
    c.init.G_adv_drn_d_38 = str(pretrained.path("G_drn_d_38"))
    c.init.G_adv_drn_d_54 = str(pretrained.path("G_drn_d_54"))
    c.networks = {n: "" for n in names}
    for name in pretrained.NAMES:  # N, G and Table 4's G: shipped
        c.networks[name] = str(pretrained.path(name))
    # The paper's evaluation (mde_adv/evaluation/config.py) on the whole test split (100
    # images), shrunk for the CPU: Fig. 4 at 6 ε, Fig. 5 at T ∈ {1, 2, 5, 10}.
    c.eval = evaluate.default_eval_config()
    c.eval.max_images = 0
    c.eval.batch_size = 20
    c.eval.fig4.eps = [0.0, 0.02, 0.05, 0.1, 0.15, 0.2]
    c.eval.fig5.steps = [1, 2, 5, 10]
    # The robustness card of N, N_adv and N(x⊗G_adv(x)) (IFGSM-10, APGD-10 with 2 restarts,
    # a 100-query square search, transfers from N; mde_adv/robustness) on the first 20 test
    # images at the headline ε = 0.1 (at three ε it took 333 s here, most of it the
    # defence's square search); the report compares it with the paper's attack in
    # "Adaptive evaluation of the defence".
    c.robustness = robustness.default_robustness_config()
    c.robustness.threat_models = (dict(norm="linf", space="normalised", eps=(0.1,)),)
    c.robustness.max_images = 20
    c.robustness.batch_size = 20
    return c
