"""NPID+CLD, MoCo v2+CLD and BYOL+CLD: presets of their base methods, not subclasses.

Wang, Liu, Yu, "Unsupervised Feature Learning by Cross-Level Instance-Group
Discrimination", CVPR 2021; official code frank-xwang/CLD-UnsupervisedLearning.

The objective (group head, k-means on the global batch, cross-view loss) is
the layer `keras_ssl.objectives.CLD`, which any method takes as an add-on:

    MoCo(encoder, symmetric=True, objectives=[CLD(feature_dim, num_groups=200)])

or, from a config, as a spec the registry builds for the encoder's width:

    methods.get("moco_v2", encoder=encoder, symmetric=True,
                objectives=[{"cld": {"num_groups": 200}}])

The registry names `npid_cld`, `moco_v2_cld` and `byol_cld` build their base
class (`NPID`, `MoCo`, `BYOL`) with such a CLD objective and the official
defaults below filled in. They also take CLD's arguments as flat keywords, the
names these methods had when they were subclasses:

    num_groups -> CLD num_groups: K, k-means clusters per view.
    cld_temperature -> temperature: T_cld.
    cld_weight -> weight: lambda, the weight of L_CLD next to the base loss.
    group_head -> head: "linear", "normlinear" or "normmlp" (`objectives.group_head`).
    group_dim -> group_dim: width of the group features (128).
    kmeans_iters -> num_iters: Lloyd iterations (5).

Precedence: the preset's defaults, then a `{"cld": {...}}` spec in
`objectives`, then the flat keywords (a key given both ways with different
values is an error). A `CLD` layer in `objectives` is used as it is.

The recipes of each at every scale are in `keras_ssl.configs.npid_cld`,
`.moco_v2_cld` and `.byol_cld`.
"""

import dataclasses
from typing import Callable

from keras_ssl.objectives.cld import CLD

# The keyword names of the former NPIDCLD/MoCoCLD/BYOLCLD -> CLD's own names.
FLAT_CLD_ARGUMENTS = {
    "num_groups": "num_groups",
    "cld_temperature": "temperature",
    "cld_weight": "weight",
    "group_head": "head",
    "group_dim": "group_dim",
    "kmeans_iters": "num_iters",
}


def _no_defaults(kwargs):
    return {}


@dataclasses.dataclass(frozen=True)
class CLDPreset:
    """A registered base method with a CLD objective and default arguments.

    Attributes:
        base: registry name of the base method.
        cld: the CLD keyword arguments (`keras_ssl.objectives.CLD`) the preset
            defaults to.
        method_defaults: a function of the caller's keyword arguments that
            returns defaults for the base's own arguments (applied with
            `setdefault`, so the caller's values win).
        doc: where the defaults come from.
    """

    base: str
    cld: dict
    method_defaults: Callable = _no_defaults
    doc: str = ""

    def arguments(self, kwargs):
        """The base class's keyword arguments for a call with `kwargs`.

        Flat CLD keywords are moved into the CLD spec in `objectives` (one is
        added first when there is none), on top of the preset's defaults.
        """
        kwargs = dict(kwargs)
        flat = {FLAT_CLD_ARGUMENTS[key]: kwargs.pop(key)
                for key in list(kwargs) if key in FLAT_CLD_ARGUMENTS}
        objectives = list(kwargs.get("objectives") or ())
        position = next((i for i, objective in enumerate(objectives)
                         if isinstance(objective, CLD)
                         or (isinstance(objective, dict) and "cld" in objective)), None)
        if position is None:
            objectives.insert(0, {"cld": {**self.cld, **flat}})
        elif isinstance(objectives[position], CLD):
            if flat:
                raise ValueError(
                    f"{sorted(flat)} given as keywords and a built CLD layer in "
                    "objectives; set them on the layer instead.")
        else:
            spec = dict(objectives[position]["cld"] or {})
            clashes = sorted(key for key in flat if key in spec and spec[key] != flat[key])
            if clashes:
                raise ValueError(f"CLD's {clashes} given both in the objectives spec and as "
                                 "keywords, with different values; give each once.")
            objectives[position] = {"cld": {**self.cld, **spec, **flat}}
        kwargs["objectives"] = objectives
        for key, value in self.method_defaults(kwargs).items():
            kwargs.setdefault(key, value)
        return kwargs


def _moco_cld_defaults(kwargs):
    # CLD needs query-encoder features of two views. The official code
    # contrasts both queries with the key of a third view (shared_key_view=2,
    # with a 3-view recipe; the configs do this). Without it each query is
    # contrasted with the other view's key (symmetric), which runs on the
    # ordinary 2-view recipe at the cost of a second key pass.
    return dict(normlinear=True, symmetric=kwargs.get("shared_key_view") is None)


PRESETS = {
    "npid_cld": CLDPreset(
        base="npid",
        cld=dict(num_groups=128, temperature=0.2, weight=1.0, head="linear",
                 group_dim=128, num_iters=5),
        doc="""NPID+CLD (`train_cifar_npid_cld.py`, `scripts/cifar/train_cifar10_npid_cld.sh`).

        Defaults are the official CIFAR-10 run: K=128, T_cld=0.2, lambda=1.0,
        Linear group head (as the Linear instance head), two views, the NPID
        loss averaged over them (full softmax over the memory, `--nce-k 0`,
        t=0.1).
        """),
    "moco_v2_cld": CLDPreset(
        base="moco_v2",
        cld=dict(num_groups=120, temperature=0.4, weight=0.25, head="normmlp",
                 group_dim=128, num_iters=5),
        method_defaults=_moco_cld_defaults,
        doc="""MoCo v2+CLD (`main_imagenet_moco_cld.py`, `train_imagenet_mocov2_cld.sh`).

        Defaults are the official ImageNet run, like MoCo's own defaults:
        K=120, T_cld=0.4, lambda=0.25, "NormMLP" heads (instance head: Dense +
        ReLU + NormLinear, `normlinear=True`; group head likewise), queue
        65,536, t=0.2, m=0.999; `symmetric=True` unless `shared_key_view` is
        given (see `_moco_cld_defaults`).

        Deviation: the stored ImageNet script (commit 29f2e91) sets
        `clusters=100`, which the imagenet config uses; methods-a.md's table
        (commit 0852e5c3) gives 120, the default here.
        """),
    "byol_cld": CLDPreset(
        base="byol",
        cld=dict(num_groups=120, temperature=0.4, weight=0.25, head="normmlp",
                 group_dim=128, num_iters=5),
        doc="""BYOL+CLD (the paper reports it; the official repository has no BYOL code).

        The group head sits on the online backbone features of the two views.
        Defaults borrow the MoCo v2+CLD ImageNet values (K=120, T_cld=0.4,
        lambda=0.25, NormMLP group head), as BYOL's own defaults are its
        ImageNet ones; they are not from an official BYOL+CLD script.
        """),
}
