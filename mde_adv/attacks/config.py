"""Static settings of an attack: `AttackConfig` (hashable, so it can be a jit static argument)."""

import dataclasses

from mde_adv.alignment import check_depth_range
from mde_adv.losses import ATTACK_LOSSES
from mde_adv.normalization import EPS_SPACES

METHODS: tuple[str, ...] = ("fgsm", "ifgsm", "pgd", "mifgsm", "noise")
# Attacks with their own loop (mde_adv/attacks/apgd.py, square.py), same conventions; the
# engine's entry points run them too.
SEARCH_METHODS: tuple[str, ...] = ("apgd", "square")
NORMS: tuple[str, ...] = ("linf", "l2")
TARGETS: tuple[str, ...] = ("ground_truth", "clean_prediction")
DEFAULT_T_MAX = 10  # Algorithm 1: T ~ U{1..10}


def _check_choice(field: str, value: str, choices) -> None:
    if value not in choices:
        raise ValueError(f"AttackConfig.{field}={value!r} is unknown; expected one of {choices}")


@dataclasses.dataclass(frozen=True)
class AttackConfig:
    """What the attack does; every field is static (changing one recompiles).

    method: 'fgsm' (one step), 'ifgsm' (Eq. 1), 'pgd' (IFGSM from a random start),
      'mifgsm' (IFGSM on the momentum of ℓ1-normalised gradients), 'apgd' (Auto-PGD:
      step halving at checkpoints, momentum, best iterate kept; `attacks.apgd`), 'square'
      (gradient-free random search over square windows, T queries; `attacks.square`),
      'noise' (no gradient: a random perturbation of the ε-ball's size, every entry ±ε for
      'linf', a uniform direction of length ε for 'l2'; the baseline an attack must beat).
    norm: threat model 'linf' (sign steps, clip to [−ε, ε]) or 'l2' (steps α·g/‖g‖₂,
      projection onto the ℓ2 ball of radius ε), both per example.
    loss: a key of `mde_adv.losses.ATTACK_LOSSES` ('l1' is the paper's).
    space: 'normalised' (ε, α in normalised-input units, no clip; the authors' code) or
      'pixel' (ε, α in [0, 1] pixel units; the adversarial image is clipped to [0, 1]).
    alpha: step size in ε's units (for 'l2' the ℓ2 length of a step). None = the method's
      default: fgsm ε, ifgsm 1 (the paper), pgd 2.5·ε/T, mifgsm ε/T, apgd 2ε (its initial
      step), square: not used (its window schedule is fixed), per example.
    t_max: static number of loop iterations, the largest allowed T. None = 1 for fgsm, else 10.
    momentum: decay μ of mifgsm; for apgd the weight of the new step (AutoAttack's 0.75 when
      None). None = 1.0 for every other method.
    random_start: start uniformly in the ε-ball; None = True for pgd, square and noise
      (square always starts from random vertical stripes; noise is its random draw). apgd
      starts at x by default (its first step is then FGSM's corner);
      `attack_with_restarts` adds random starts.
    targeted: minimise the loss (move towards the reference depth) instead of maximising it.
    target: reference depth of the loss: 'ground_truth' (the depth map passed as `y`, which
      for a targeted attack is the target map) or 'clean_prediction' (stop_gradient of the
      attacked function on the clean input).
    target_scale: the reference depth is multiplied by it (e.g. 2.0 with targeted=True and
      target='clean_prediction' pulls the prediction towards twice the clean depth).
    align: None (the attacked function predicts metres), or the (min, max) metres of the
      per-image scale-and-shift alignment of a relative (disparity) output: the loss is
      `alignment.aligned_loss` of the configured one, measured after aligning the attacked
      output to the ground truth, so that the alignment of the evaluation cannot undo the
      attack (`alignment.depth_range` derives it from the depth network's config). Needs
      target='ground_truth' (the clean prediction of a relative model is not metres).
    """

    method: str = "ifgsm"
    norm: str = "linf"
    loss: str = "l1"
    space: str = "normalised"
    alpha: float | None = None
    t_max: int | None = None
    momentum: float | None = None
    random_start: bool | None = None
    targeted: bool = False
    target: str = "ground_truth"
    target_scale: float = 1.0
    align: tuple[float, float] | None = None

    def __post_init__(self):
        _check_choice("method", self.method, METHODS + SEARCH_METHODS)
        _check_choice("norm", self.norm, NORMS)
        _check_choice("loss", self.loss, tuple(ATTACK_LOSSES))
        _check_choice("space", self.space, EPS_SPACES)
        _check_choice("target", self.target, TARGETS)
        if self.alpha is not None and not float(self.alpha) > 0:
            raise ValueError(f"AttackConfig.alpha must be positive or None, got {self.alpha}")
        momentum = self.momentum
        if momentum is None:
            momentum = 0.75 if self.method == "apgd" else 1.0
        if not float(momentum) >= 0:
            raise ValueError(f"AttackConfig.momentum must be >= 0, got {self.momentum}")
        if self.method == "apgd" and not float(momentum) <= 1:
            raise ValueError(f"AttackConfig.momentum of apgd must be in [0, 1], got {momentum}")
        object.__setattr__(self, "momentum", float(momentum))
        if not abs(float(self.target_scale)) < float("inf"):
            raise ValueError(f"AttackConfig.target_scale must be finite, got {self.target_scale}")
        t_max = self.t_max
        if t_max is None:
            t_max = 1 if self.method == "fgsm" else DEFAULT_T_MAX
        if isinstance(t_max, bool) or int(t_max) != t_max or t_max < 1:
            raise ValueError(f"AttackConfig.t_max must be an integer >= 1, got {self.t_max!r}")
        if self.method == "fgsm" and t_max != 1:
            raise ValueError(f"AttackConfig.t_max={t_max} but fgsm takes exactly one step")
        if self.method in ("square", "noise") and self.random_start is False:
            raise ValueError(
                f"AttackConfig.random_start=False: {self.method} always starts at random"
            )
        random_start = self.random_start
        if random_start is None:
            random_start = self.method in ("pgd", "square", "noise")
        object.__setattr__(self, "t_max", int(t_max))
        object.__setattr__(self, "random_start", bool(random_start))
        if self.alpha is not None:
            object.__setattr__(self, "alpha", float(self.alpha))
        if self.align is not None:
            try:
                align = tuple(float(v) for v in self.align)
                check_depth_range(align)
            except (TypeError, ValueError) as error:
                raise ValueError(f"AttackConfig.align: {error}") from None
            if self.target != "ground_truth":
                raise ValueError(
                    f"AttackConfig.align needs target='ground_truth' (target={self.target!r}): "
                    "a relative model's clean prediction is disparity up to scale and shift, "
                    "and a rescaled one aligns back to it exactly"
                )
            object.__setattr__(self, "align", align)

    @property
    def nested_budgets(self) -> bool:
        """Whether the attack with budget T is the first T steps of any longer one: the step
        (α) does not depend on T and nothing else is scheduled on T (FGSM/IFGSM/PGD/MI-FGSM
        with α set, IFGSM's default α = 1; not APGD, the square search or noise)."""
        if self.method not in ("fgsm", "ifgsm", "pgd", "mifgsm"):
            return False
        return self.alpha is not None or self.method in ("fgsm", "ifgsm")

    def describe(self) -> str:
        """One line naming every setting, ε space included, to print beside results."""
        alpha = "default" if self.alpha is None else f"{self.alpha:g}"
        goal = "targeted" if self.targeted else "untargeted"
        aligned = ""
        if self.align is not None:
            aligned = " aligned_in_disparity=[{:g}, {:g}] m".format(*self.align)
        return (
            f"{self.method} {self.norm} loss={self.loss} eps_space={self.space} alpha={alpha} "
            f"t_max={self.t_max} random_start={self.random_start} momentum={self.momentum:g} "
            f"{goal} target={self.target}×{self.target_scale:g}{aligned}"
        )
