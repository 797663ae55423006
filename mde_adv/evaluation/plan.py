"""The evaluation as a list of attack groups: one group is one `eps_sweep` (one set of
adversarial inputs per ε) and the methods evaluated on them.

`plan(eval_config, available, align)` turns the config's sections into groups, dropping the
methods (and groups) that need a network not in `available`; `align` (None for a metric N, else
the depth range of `alignment.depth_range`) goes into every group's attack config, whose
`align` the metrics of its methods use too (every method reads N's or N_adv's output).
"""

import dataclasses
from collections.abc import Collection

import ml_collections

from mde_adv import attacks
from mde_adv.evaluation.config import check_eval_config
from mde_adv.evaluation.methods import ATTACK_TARGETS, METHODS, Method

REGIONS: tuple[str, ...] = ("all", "salient", "non_salient")


def eps_label(eps: float) -> str:
    """Setting label of a radius, e.g. 'ε=0.05'."""
    return f"ε={float(eps):g}"


@dataclasses.dataclass(frozen=True)
class AttackGroup:
    """One eps_sweep and the methods evaluated on its inputs.

    table: the config section. settings: one label per ε. eps: radii in the attack's ε space;
    ε = 0 gives x itself (no attack). steps: T of every ε. target: the attacked function (a
    key of ATTACK_TARGETS: 'N(x)' for x* = Adv(x; N), a pipeline for x**). adversarial: the
    symbol of the attacked input in the labels ('x*' or 'x**'); settings with ε = 0 are
    labelled with x when clean_labels. region: None, or restrict δ to 'all'/'salient'/
    'non_salient' pixels of region_net(x) (top salient_fraction of the map per image).
    extras: None, 'energy' (shares of δ and ∇ℓ energy in non-salient pixels) or 'targeted'.
    """

    table: str
    settings: tuple[str, ...]
    eps: tuple[float, ...]
    steps: int
    config: attacks.AttackConfig
    methods: tuple[Method, ...]
    target: str = "N(x)"
    adversarial: str = "x*"
    clean_labels: bool = False
    region: str | None = None
    region_net: str = "G"
    salient_fraction: float = 0.5
    extras: str | None = None

    def method_label(self, method: Method, setting_index: int) -> str:
        clean = self.clean_labels and self.eps[setting_index] == 0
        return method.label("x" if clean else self.adversarial)

    @property
    def networks(self) -> set[str]:
        needed = set(ATTACK_TARGETS[self.target].networks)
        if self.region is not None:
            needed.add(self.region_net)
        return needed


def _largest_t(eval_config) -> int:
    """The largest T of the selected sections: every iterative attack's loop bound, so that
    attacks differing only in T (traced) share one compiled program."""
    steps = [1]
    for table in eval_config.tables:
        value = eval_config[table].get("steps", 1)
        steps += list(value) if isinstance(value, list | tuple) else [value]
    return max(int(s) for s in steps)


def _attack_config(name: str, eval_config, **overrides) -> attacks.AttackConfig:
    """The engine config of attack `name` with α = eval_config.alpha for FGSM/IFGSM."""
    alpha = float(eval_config.alpha) if name in ("fgsm", "ifgsm") else None
    return attacks.AttackConfig(
        method=name,
        space=eval_config.eps_space,
        alpha=alpha,
        t_max=1 if name in ("fgsm", "noise") else _largest_t(eval_config),
        **overrides,
    )


def _methods(labels) -> tuple[Method, ...]:
    return tuple(METHODS[label] for label in labels)


def _eps_group(table, section, eval_config, methods, **kwargs) -> AttackGroup:
    eps = tuple(float(e) for e in section.eps)
    steps = int(section.get("steps", 1))
    settings = kwargs.pop("settings", tuple(eps_label(e) for e in eps))
    config = _attack_config(section.attack, eval_config)
    return AttackGroup(table, settings, eps, steps, config, methods, **kwargs)


def _single(
    table,
    setting,
    section,
    eval_config,
    methods,
    *,
    attack=None,
    steps=None,
    overrides=None,
    **group_fields,
) -> AttackGroup:
    """A group of the one ε section.eps, labelled `setting`."""
    attack = attack or section.attack
    steps = int(section.get("steps", 1) if steps is None else steps)
    config = _attack_config(attack, eval_config, **(overrides or {}))
    eps = (float(section.eps),)
    return AttackGroup(table, (setting,), eps, steps, config, methods, **group_fields)


def _table_groups(table: str, eval_config) -> list[AttackGroup]:
    section = eval_config[table]
    if table in ("table1", "fig4", "noise"):
        return [_eps_group(table, section, eval_config, _methods(section.methods))]
    if table == "table2":
        eps = [float(e) for e in section.eps]
        settings = tuple("clean" if e == 0 else eps_label(e) for e in eps)
        methods = _methods(section.methods)
        return [
            _eps_group(table, section, eval_config, methods, settings=settings, clean_labels=True)
        ]
    if table == "table3":
        methods = _methods(section.methods)
        return [
            _single(table, f"loss={loss}", section, eval_config, methods, overrides={"loss": loss})
            for loss in section.losses
        ]
    if table == "table4":
        methods = tuple(Method("N", name) for name in section.saliency_nets)
        return [_single(table, eps_label(section.eps), section, eval_config, methods)]
    if table == "fig5":
        methods = _methods(section.methods)
        return [
            _single(table, f"T={t}", section, eval_config, methods, steps=t) for t in section.steps
        ]
    if table == "defence_aware":
        groups = [_eps_group(table, section, eval_config, _methods(section.reference_methods))]
        for target in section.targets:
            pipeline = ATTACK_TARGETS[target]
            groups.append(
                _eps_group(
                    table, section, eval_config, (pipeline,), target=target, adversarial="x**"
                )
            )
        return groups
    if table == "attack_variants":
        methods = _methods(section.methods)
        return [
            _single(table, attack, section, eval_config, methods, attack=attack)
            for attack in section.attacks
        ]
    if table == "salient_regions":
        kwargs = dict(
            region_net=section.saliency_net, salient_fraction=float(section.salient_fraction)
        )
        names = {"all": "all pixels", "salient": "salient only", "non_salient": "non-salient only"}
        return [
            _single(
                table,
                names[region],
                section,
                eval_config,
                (METHODS["N(x*)"],),
                region=region,
                extras="energy" if region == "all" else None,
                **kwargs,
            )
            for region in REGIONS
        ]
    if table == "targeted":
        overrides = dict(
            targeted=True, target="clean_prediction", target_scale=float(section.scale)
        )
        setting = f"target={float(section.scale):g}×N(x)"
        return [
            _single(
                table,
                setting,
                section,
                eval_config,
                (METHODS["N(x*)"],),
                overrides=overrides,
                extras="targeted",
            )
        ]
    return []  # fig6_7 holds images, not table rows


def _keep_available(group: AttackGroup, available: Collection[str]) -> AttackGroup | None:
    if not group.networks <= set(available):
        return None
    methods = tuple(m for m in group.methods if set(m.networks) <= set(available))
    if not methods:
        return None
    return dataclasses.replace(group, methods=methods)


def _check_unique_labels(group: AttackGroup) -> None:
    for index, setting in enumerate(group.settings):
        labels = [group.method_label(m, index) for m in group.methods]
        if len(set(labels)) != len(labels):
            raise ValueError(
                f"eval_config.{group.table}: methods {labels} coincide on the setting "
                f"{setting!r}; list each method once"
            )


# Tables whose attack is not defined for a relative N: a target of scale·N(x) aligns back to
# N(x) exactly, so the targeted attack would have nothing to do.
UNALIGNABLE_TABLES: tuple[str, ...] = ("targeted",)


def check_alignable(tables, align: tuple[float, float] | None) -> None:
    """ValueError naming the tables of UNALIGNABLE_TABLES among `tables` when align is set."""
    refused = [t for t in tables if t in UNALIGNABLE_TABLES]
    if align is not None and refused:
        raise ValueError(
            f"tables {refused} cannot be evaluated on a relative N (scores after per-image "
            "scale-and-shift alignment): a targeted attack towards scale·N(x) aligns back to "
            "N(x). Leave them out of eval.tables"
        )


def _aligned(group: AttackGroup, align: tuple[float, float] | None) -> AttackGroup:
    if align is None:
        return group
    return dataclasses.replace(group, config=dataclasses.replace(group.config, align=align))


def plan(
    eval_config: ml_collections.ConfigDict,
    available: Collection[str],
    align: tuple[float, float] | None = None,
) -> list[AttackGroup]:
    """The attack groups of the selected tables whose networks are all in `available`
    (methods needing a missing network are dropped). Checks the config first. align: None
    for a metric N, else the depth range (metres) of the per-image alignment that every
    attack loss and every method's metrics use (`alignment.depth_range`)."""
    check_eval_config(eval_config)
    check_alignable(eval_config.tables, align)
    groups = []
    for table in eval_config.tables:
        for group in _table_groups(table, eval_config):
            _check_unique_labels(group)
            kept = _keep_available(group, available)
            if kept is not None:
                groups.append(_aligned(kept, align))
    return groups


FIGURE_METHODS = ("N(x*)", "N_adv(x*)", "N(x*⊗G(x))", "N(x*⊗G(x*))", "N(x*⊗G_adv(x*))")


def figure_group(
    eval_config: ml_collections.ConfigDict,
    available: Collection[str],
    align: tuple[float, float] | None = None,
) -> AttackGroup | None:
    """The attack of Figs. 6 and 7 (None when not selected or N is missing) with the methods
    of Fig. 6 that the available networks allow; align as for `plan`."""
    if "fig6_7" not in eval_config.tables:
        return None
    section = eval_config.fig6_7
    group = _single(
        "fig6_7", eps_label(section.eps), section, eval_config, _methods(FIGURE_METHODS)
    )
    kept = _keep_available(group, available)
    return None if kept is None else _aligned(kept, align)
