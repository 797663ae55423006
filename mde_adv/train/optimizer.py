"""The optimiser of spec §7: Adam with coupled L2 weight decay and a learning-rate schedule.

PyTorch's `Adam(weight_decay=wd)` adds wd·θ to the gradient before the Adam moments (coupled
L2, not AdamW), so the chain is add_decayed_weights → scale_by_adam → -lr(step).
"""

import ml_collections
import optax

LR_SCHEDULES = ("step", "cosine")


def learning_rate_schedule(
    config: ml_collections.ConfigDict, steps_per_epoch: int, total_steps: int
) -> optax.Schedule:
    """The learning rate at each step, by `config.lr_schedule`:

    'step' (spec §7, the default): lr · decay^(floor(epoch / decay_every_epochs)); constant
      when `lr_decay_every_epochs` is 0.
    'cosine': a linear warm-up from 0 over `warmup_epochs`, then a cosine decay from lr to 0
      at `total_steps`.
    """
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    kind = config.get("lr_schedule", "step")
    if kind not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule: unknown {kind!r}; expected one of {list(LR_SCHEDULES)}")
    if kind == "cosine":
        warmup = round(float(config.get("warmup_epochs", 0.0)) * steps_per_epoch)
        if not 0 <= warmup < total_steps:
            raise ValueError(
                f"warmup_epochs: {config.get('warmup_epochs')} epochs = {warmup} steps, "
                f"must be in [0, {total_steps}) (the stage's steps)"
            )
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0,
            peak_value=config.learning_rate,
            warmup_steps=warmup,
            decay_steps=total_steps,
            end_value=0.0,
        )
    every = int(config.get("lr_decay_every_epochs", 0))
    if every <= 0:
        return optax.constant_schedule(config.learning_rate)
    return optax.exponential_decay(
        init_value=config.learning_rate,
        transition_steps=every * steps_per_epoch,
        decay_rate=config.lr_decay_factor,
        staircase=True,
    )


def adam_coupled_l2(
    config: ml_collections.ConfigDict, steps_per_epoch: int, total_steps: int
) -> optax.GradientTransformation:
    """Adam(β1, β2) with coupled L2 `weight_decay` on every parameter (BN scale/bias included)."""
    return optax.chain(
        optax.add_decayed_weights(config.weight_decay),
        optax.scale_by_adam(b1=config.adam_b1, b2=config.adam_b2, eps=config.adam_eps),
        optax.scale_by_learning_rate(learning_rate_schedule(config, steps_per_epoch, total_steps)),
    )
