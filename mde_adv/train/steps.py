"""One train-step body for the four tasks of spec §7, shared by the pmap and jit wrappers.

Tasks:
  depth         N:      l_dif(N(x), ȳ)
  depth_adv     N_adv:  l_dif(N(x'), ȳ), x' = x or IFGSM(x; N) per example (Algorithm 1's sampler)
  saliency      G:      l_dif(N(x⊗G(x)), target) + λ·mean G(x), target = stop_grad N(x) or ȳ
  saliency_adv  G_adv:  l_dif(ȳ, N(x'⊗G(x'))) + λ·mean G(x'), x' as for depth_adv, against the
                        frozen N (Algorithm 1, Eq. 5)
With `align` set (a relative N: disparity up to scale and shift, `alignment.depth_range`) every
loss against the ground truth ȳ is measured after aligning N's output to ȳ per image (affine-
invariant training; the attack of Algorithm 1 carries the same switch in its config); G's
target N(x) ("depth_net") is N's own output, in the same disparity space as N(x⊗G(x)), and is
compared with it as it is: aligning the one to the other needs a target in metres, and
N(x⊗G(x)) = N(x) is what makes the aligned scores of the two equal.
N is frozen and in inference mode (running statistics) in the saliency tasks; the trained model
uses batch statistics, synchronised over `axis_name` when the step runs under pmap.
Per-example randomness comes from keys folded with (step, global example index), so a pmapped
step and a single-device step on the same global batch draw the same ε, T and coin per example.
"""

import dataclasses
from typing import Any

import chex
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from mde_adv import attacks, losses
from mde_adv.alignment import metric_depth

TASKS = ("depth", "depth_adv", "saliency", "saliency_adv")
SALIENCY_TARGETS = ("depth_net", "ground_truth")
# Algorithm 1's coin: 'bernoulli' (the paper: each example adversarial with probability
# p_adversarial, independently) or 'paired' (examples 2j and 2j+1 share a coin that makes
# exactly one of them adversarial: the same probability 1/2 for every example, B/2 attacked
# per batch, so the attack runs on half of the batch, about half of an adversarial step's cost)
SAMPLERS = ("bernoulli", "paired")


@flax.struct.dataclass
class TrainState:
    """Everything a task updates: the trained model's variables and the optimiser state."""

    step: jax.Array  # int32 []
    params: Any
    batch_stats: Any
    opt_state: optax.OptState


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """The static settings of one training task (hashable: closed over by the jitted step).

    model: the trained network (N for depth tasks, G for saliency tasks), built with the
      data axis name for synchronised BatchNorm when pmapped.
    depth_model: N; for saliency tasks it is frozen and its variables are passed to the step.
    sparsity_weight: λ of Eq. 4/5. saliency_target: "depth_net" (ICCV) or "ground_truth".
    attack: the attack of Algorithm 1 (IFGSM, α = 1, ℓ1 loss, ε space) for adversarial tasks.
    p_adversarial: probability that an example is replaced by its adversarial version.
    sampler: how the examples to replace are drawn (SAMPLERS; 'paired' needs p_adversarial 0.5
      and an even batch on every device).
    align: None (N predicts metres), or the depth range (metres) of the per-image alignment
      of a relative N's output before every loss against the ground truth; an adversarial
      task's attack must have the same `align`.
    """

    task: str
    model: nn.Module
    depth_model: nn.Module
    tx: optax.GradientTransformation
    sparsity_weight: float = 0.0
    saliency_target: str = "ground_truth"
    attack: attacks.AttackConfig | None = None
    p_adversarial: float = 0.5
    eps_range: tuple[float, float] = (0.01, 0.3)
    steps_range: tuple[int, int] = (1, 10)
    sampler: str = "bernoulli"
    align: tuple[float, float] | None = None

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; expected one of {TASKS}")
        if self.saliency_target not in SALIENCY_TARGETS:
            raise ValueError(
                f"unknown saliency_target {self.saliency_target!r}; expected {SALIENCY_TARGETS}"
            )
        if self.task.endswith("_adv") and self.attack is None:
            raise ValueError(f"task {self.task!r} needs an attack config")
        if self.attack is not None and self.attack.align != self.align:
            raise ValueError(
                f"the attack's align {self.attack.align} differs from the task's {self.align}: "
                "an attack on a relative N must measure its loss after the same alignment"
            )
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; expected one of {SAMPLERS}")
        if self.sampler == "paired" and self.p_adversarial != 0.5:
            raise ValueError(
                f"sampler 'paired' makes one example of each pair adversarial (p = 0.5), "
                f"got p_adversarial={self.p_adversarial}"
            )

    @property
    def adversarial(self) -> bool:
        return self.task.endswith("_adv")

    @property
    def saliency(self) -> bool:
        return self.task.startswith("saliency")


def init_train_state(variables: dict, tx: optax.GradientTransformation) -> TrainState:
    """A fresh TrainState at step 0 from model variables {'params', 'batch_stats'}."""
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=variables["params"],
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(variables["params"]),
    )


def first_example_index(batch_size: int, axis_name: str | None) -> jax.Array:
    """Global index of this device's first example within the global batch."""
    if axis_name is None:
        return jnp.zeros((), jnp.int32)
    return jax.lax.axis_index(axis_name) * batch_size


def algorithm1_draws(
    spec: TaskSpec, step_key: jax.Array, batch_size: int, first_index: jax.Array | int = 0
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Algorithm 1, lines 4–7, for a batch: (is_adv bool[B], eps f32[B], steps int32[B],
    attack keys [B]); example i's draws depend only on step_key and first_index + i (with the
    'paired' sampler, example 2j+1's coin is example 2j's: is_adv[2j+1] = not is_adv[2j])."""
    keys = attacks.example_keys(step_key, batch_size, first_index)
    split = jax.vmap(jax.random.split)(keys)
    sample_keys, attack_keys = split[:, 0], split[:, 1]
    is_adv, eps, steps = attacks.sample_algorithm1(
        sample_keys,
        p_adversarial=spec.p_adversarial,
        eps_range=spec.eps_range,
        steps_range=spec.steps_range,
    )
    if spec.sampler == "paired":
        if batch_size % 2:
            raise ValueError(
                f"sampler 'paired' needs an even batch on every device, got {batch_size}"
            )
        first = is_adv[0::2]
        is_adv = jnp.stack([first, ~first], axis=1).reshape(batch_size)
    return is_adv, eps, steps, attack_keys


def adversarial_inputs(
    spec: TaskSpec,
    predict_fn,
    x: jax.Array,
    depth: jax.Array,
    step_key: jax.Array,
    first_index: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """Algorithm 1, lines 4–16, per example: x' = IFGSM(x; ε, T) if the coin says so, else x.

    Returns x' [B,H,W,3] (normalised space) and the per-example adversarial flags [B]. With the
    'paired' sampler only the B/2 adversarial examples are attacked (same x' otherwise).
    """
    is_adv, eps, steps, attack_keys = algorithm1_draws(spec, step_key, x.shape[0], first_index)
    if spec.sampler == "paired":
        chosen = jnp.flatnonzero(is_adv, size=x.shape[0] // 2)  # one of each pair
        x_star = attacks.attack_traced(
            predict_fn,
            x[chosen],
            depth[chosen],
            eps=eps[chosen],
            steps=steps[chosen],
            keys=attack_keys[chosen],
            config=spec.attack,
        )
        return jnp.asarray(x).at[chosen].set(x_star), is_adv
    # clean examples get T = 0: the attack loop then runs only as long as the adversarial ones
    steps = jnp.where(is_adv, steps, 0)
    x_star = attacks.attack_traced(
        predict_fn, x, depth, eps=eps, steps=steps, keys=attack_keys, config=spec.attack
    )
    x_prime = jnp.where(is_adv[:, None, None, None], x_star, x)
    return x_prime, is_adv


def depth_loss_terms(
    pred: jax.Array, target: jax.Array, align: tuple[float, float] | None = None
) -> dict[str, jax.Array]:
    """`losses.l_dif_terms` of pred [B,h,w,1] vs the ground truth target (metres), pred first
    aligned to the target per image when align is set (a relative N's disparity)."""
    return losses.l_dif_terms(metric_depth(pred, target, align), target)


def _mean_over(tree, axis_name: str | None):
    return tree if axis_name is None else jax.lax.pmean(tree, axis_name)


def train_step(
    spec: TaskSpec,
    state: TrainState,
    batch: dict,
    frozen: dict | None,
    key: jax.Array,
    axis_name: str | None = None,
) -> tuple[TrainState, dict]:
    """One optimiser step on this device's shard of the global batch.

    batch: {'image': f32[B,H,W,3] normalised, 'depth': f32[B,H/2,W/2,1] metres}.
    frozen: N's variables for the saliency tasks (never updated), else None.
    key: the run's base key; the step's randomness is fold_in(key, state.step).
    axis_name: the data axis under pmap (gradients, losses and BN statistics are averaged
      over it), or None for a single device or a jit with sharding.
    Returns the new state and scalar metrics (averaged over the data axis).
    """
    x, depth = batch["image"], batch["depth"]
    chex.assert_rank([x, depth], 4)
    chex.assert_type([x, depth], jnp.float32)
    first_index = first_example_index(x.shape[0], axis_name)
    step_key = jax.random.fold_in(key, state.step)

    def model_vars(params, batch_stats):
        return {"params": params, "batch_stats": batch_stats}

    metrics = {}
    if spec.adversarial:
        if spec.saliency:
            attacked_vars = frozen
        else:
            attacked_vars = jax.lax.stop_gradient(model_vars(state.params, state.batch_stats))
        predict = lambda z: spec.depth_model.apply(attacked_vars, z, train=False)
        x, is_adv = adversarial_inputs(spec, predict, x, depth, step_key, first_index)
        metrics["adversarial_fraction"] = jnp.mean(is_adv.astype(jnp.float32))

    def loss_fn(params):
        if spec.saliency:
            mask, updates = spec.model.apply(
                model_vars(params, state.batch_stats), x, train=True, mutable=["batch_stats"]
            )
            pred = spec.depth_model.apply(frozen, x * mask, train=False)
            if spec.saliency_target == "depth_net":  # N's own output: same space, no fit
                target = jax.lax.stop_gradient(spec.depth_model.apply(frozen, x, train=False))
                parts = losses.l_dif_terms(pred, target)
            else:
                parts = depth_loss_terms(pred, depth, spec.align)
            sparsity = losses.sparsity(mask)
            loss = parts["l_dif"] + spec.sparsity_weight * sparsity
            aux = {**parts, "sparsity": sparsity}
        else:
            pred, updates = spec.model.apply(
                model_vars(params, state.batch_stats), x, train=True, mutable=["batch_stats"]
            )
            parts = depth_loss_terms(pred, depth, spec.align)
            loss = parts["l_dif"]
            aux = dict(parts)
        return loss, (updates.get("batch_stats", {}), aux)  # {}: a model without BatchNorm

    (loss, (batch_stats, aux)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    grads = _mean_over(grads, axis_name)
    batch_stats = _mean_over(batch_stats, axis_name)
    updates, opt_state = spec.tx.update(grads, state.opt_state, state.params)
    new_state = TrainState(
        step=state.step + 1,
        params=optax.apply_updates(state.params, updates),
        batch_stats=batch_stats,
        opt_state=opt_state,
    )
    metrics.update(aux, loss=loss)
    return new_state, _mean_over(metrics, axis_name)
