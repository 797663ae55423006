"""The prediction methods of the tables (Fig. 3 of the paper) and the attacked functions.

A method is a depth network, optionally fed its input masked by a saliency network's map:
N(x*), N_adv(x*), N(x*⊗G(x*)), N(x*⊗G(x)) (the oracle: mask from the clean x),
N(x*⊗G_adv(x*)), ... The mask multiplies the normalised image (spec §7). Networks are named
'N', 'N_adv', 'G', 'G_adv' and, for Table 4, 'G_adv_drn_d_38', 'G_adv_drn_d_54'; `networks`
arguments map these names to `(flax module, variables)` pairs.
"""

import dataclasses
import itertools
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
from jax.tree_util import Partial

DEPTH_NETS: tuple[str, ...] = ("N", "N_adv")
SALIENCY_NETS: tuple[str, ...] = ("G", "G_adv", "G_adv_drn_d_38", "G_adv_drn_d_54")
NETWORK_NAMES: tuple[str, ...] = DEPTH_NETS + SALIENCY_NETS

Networks = Mapping[str, tuple[nn.Module, Any]]


@dataclasses.dataclass(frozen=True)
class Method:
    """depth_net(z ⊗ saliency_net(m)) with z the evaluated input and m = z, or the clean x
    when mask_from_clean (the oracle N(x*⊗G(x)) of Table 1)."""

    depth_net: str
    saliency_net: str | None = None
    mask_from_clean: bool = False

    def label(self, adversarial: str = "x*") -> str:
        """The paper's notation with `adversarial` ('x*', 'x**' or 'x') as the input."""
        if self.saliency_net is None:
            return f"{self.depth_net}({adversarial})"
        source = "x" if self.mask_from_clean else adversarial
        return f"{self.depth_net}({adversarial}⊗{self.saliency_net}({source}))"

    @property
    def networks(self) -> tuple[str, ...]:
        return (
            (self.depth_net,) if self.saliency_net is None else (self.depth_net, self.saliency_net)
        )


def _all_methods() -> dict[str, Method]:
    found = {}
    for depth, saliency in itertools.product(DEPTH_NETS, (None, *SALIENCY_NETS)):
        for from_clean in (False, True) if saliency else (False,):
            method = Method(depth, saliency, from_clean)
            found[method.label()] = method
    return found


# Every method by its label with x* as the input, e.g. METHODS['N(x*⊗G_adv(x*))'].
METHODS: dict[str, Method] = _all_methods()
# Functions an attack can target, by their label on a clean input: N and the pipelines
# C(x) = N(x⊗G(x)) of the defence-aware attack x** = Adv(x; C) (paper §3.1).
ATTACK_TARGETS: dict[str, Method] = {
    method.label("x"): method for method in METHODS.values() if not method.mask_from_clean
}


@dataclasses.dataclass(frozen=True)
class _Inference:
    """variables, x ↦ model.apply(variables, x, train=False); hashable (static under jit)."""

    model: nn.Module

    def __call__(self, variables: Any, x: jax.Array) -> jax.Array:
        return self.model.apply(variables, x, train=False)


NetworkFns = Mapping[str, Partial]


def network_functions(networks: Networks) -> dict[str, Partial]:
    """{name: x ↦ network(x)} in inference mode, each a `Partial` over its variables, so jitted
    code taking them recompiles only for new models, never for new variables."""
    return {
        name: Partial(_Inference(model), variables) for name, (model, variables) in networks.items()
    }


def _self_masked_depth(depth_fn: Partial, saliency_fn: Partial, z: jax.Array) -> jax.Array:
    return depth_fn(z * saliency_fn(z))


def attacked_function(method: Method, fns: NetworkFns) -> Partial:
    """The attacked function z ↦ method(z), its mask computed from z (N, or the pipeline
    C(z) = N(z⊗G(z))): f32[B,H,W,3] normalised → f32[B,H/2,W/2,1] metres."""
    if method.mask_from_clean:
        raise ValueError(f"{method.label()} needs the clean x: it cannot be attacked as a function")
    if method.saliency_net is None:
        return fns[method.depth_net]
    return Partial(_self_masked_depth, fns[method.depth_net], fns[method.saliency_net])
