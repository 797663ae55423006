"""The optimiser of spec §7: Adam with coupled L2 weight decay and a step learning-rate schedule.

PyTorch's `Adam(weight_decay=wd)` adds wd·θ to the gradient before the Adam moments (coupled
L2, not AdamW), so the chain is add_decayed_weights → scale_by_adam → -lr(step).
"""

import ml_collections
import optax


def learning_rate_schedule(
    config: ml_collections.ConfigDict, steps_per_epoch: int
) -> optax.Schedule:
    """lr · decay^(floor(epoch / decay_every_epochs)); no decay when decay_every_epochs is 0.

    config: `learning_rate`, `lr_decay_factor` (0.1 for N), `lr_decay_every_epochs` (5 for N).
    """
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
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
    config: ml_collections.ConfigDict, steps_per_epoch: int
) -> optax.GradientTransformation:
    """Adam(β1, β2) with coupled L2 `weight_decay` on every parameter (BN scale/bias included)."""
    return optax.chain(
        optax.add_decayed_weights(config.weight_decay),
        optax.scale_by_adam(b1=config.adam_b1, b2=config.adam_b2, eps=config.adam_eps),
        optax.scale_by_learning_rate(learning_rate_schedule(config, steps_per_epoch)),
    )
