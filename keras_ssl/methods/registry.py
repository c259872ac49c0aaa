"""Registry: method names -> classes, presets of them, and objectives built from config.

A registered name is either a method class or a preset of one (a base class
plus default arguments, e.g. `moco_v2_cld`: `MoCo` with a CLD objective; see
`keras_ssl.methods.cld`). `METHODS[name]` is the class either way, so class
attributes (`recipe_name`, `mixed_image_sizes`) are read the same for both.

Config values are plain data, so objectives in a config are specs,
`objectives=[{"cld": {"num_groups": 128}}]`: one key naming an entry of
`OBJECTIVES` and its keyword arguments. `get` builds them for the encoder's
feature width (their `input_dim`); layers given directly are kept as they are.
"""

from keras_ssl.methods import ascl, cld, ifnd, mochi, xmoco
from keras_ssl.methods.byol import BYOL
from keras_ssl.methods.clim import CLIM
from keras_ssl.methods.cmsf import CMSF, SupervisedCMSF
from keras_ssl.methods.fixmatch import FixMatch
from keras_ssl.methods.hiermatch import HierMatch
from keras_ssl.methods.instance_classifier import InstanceClassifier
from keras_ssl.methods.interclr import InterCLR
from keras_ssl.methods.mira import MIRA
from keras_ssl.methods.mixmatch import MixMatch
from keras_ssl.methods.moco import MoCo
from keras_ssl.methods.msf import MSF
from keras_ssl.methods.nncsl import NNCSL
from keras_ssl.methods.ncc import NCC
from keras_ssl.methods.npid import NPID
from keras_ssl.methods.simclr import SimCLR
from keras_ssl.methods.swav import SwAV
from keras_ssl.objectives.cld import CLD

METHODS = {
    "simclr": SimCLR,
    "moco_v2": MoCo,
    "npid": NPID,
    "byol": BYOL,
    "swav": SwAV,
    "mira": MIRA,
    "msf": MSF,
    "cmsf": CMSF,
    "cmsf_supervised": SupervisedCMSF,
    "interclr": InterCLR,
    "ncc": NCC,
    "clim": CLIM,
    "instance_classifier": InstanceClassifier,
    "fixmatch": FixMatch,
    "mixmatch": MixMatch,
    "hiermatch": HierMatch,
    "nncsl": NNCSL,
}

# Registry name -> preset (`.base`, `.arguments(kwargs)`): a base method above
# with default arguments (a CLD objective, a logit transform). One line each.
PRESETS = {
    **cld.PRESETS,  # npid_cld, moco_v2_cld, byol_cld
    "mochi": mochi.PRESET,
    "ascl": ascl.PRESET,
    "xmoco": xmoco.PRESET,
    "ifnd": ifnd.PRESET,
}
# A preset's entry in METHODS is its base's class.
METHODS.update({name: METHODS[preset.base] for name, preset in PRESETS.items()})

# Objective specs a config may name, and the layer each builds.
OBJECTIVES = {"cld": CLD}

# Logit-transform specs a config may name (`{"mochi": {...}}`), and the
# transform each builds (`keras_ssl.losses.logit_transforms.LogitTransform`).
LOGIT_TRANSFORMS = {
    "mochi": mochi.HardNegativeMixing,
    "ascl": ascl.SoftNeighbourTargets,
    "xmoco": xmoco.CrossSimilarityConsistency,
    "ifnd": ifnd.FalseNegativeElimination,
}


def available():
    """Registered method names, sorted."""
    return sorted(METHODS)


def method_class(name):
    """The class `get(name, ...)` builds (the base class for a preset)."""
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}; available: {', '.join(available())}.")
    return METHODS[name]


def base_name(name):
    """The registry name of the method `name` presets (`name` itself if it is no preset)."""
    method_class(name)
    return PRESETS[name].base if name in PRESETS else name


def make_objectives(specs, feature_dim):
    """Objective layers from `specs`, each a layer or a one-key dict `{kind: kwargs}`.

    Args:
        specs: a list of `keras.layers.Layer` objectives (kept) and specs
            such as `{"cld": {"num_groups": 128, "weight": 1.0}}` (built as
            `OBJECTIVES[kind](input_dim=feature_dim, **kwargs)`).
        feature_dim: width of the encoder's features.

    Example:
    >>> [layer.num_groups for layer in make_objectives([{"cld": {"num_groups": 3}}], 8)]
    [3]
    """
    return [_build_spec(spec, OBJECTIVES, "An objective", input_dim=feature_dim)
            for spec in specs]


def make_logit_transforms(specs):
    """Logit transforms from `specs`, each a transform (kept) or a one-key dict `{kind: kwargs}`."""
    return [_build_spec(spec, LOGIT_TRANSFORMS, "A logit-transform") for spec in specs]


def _build_spec(spec, table, what, **defaults):
    """`spec` itself unless it is a one-key dict `{kind: kwargs}`: then `table[kind](**kwargs)`.

    `defaults` fill keyword arguments the spec leaves out.
    """
    if not isinstance(spec, dict):
        return spec
    if len(spec) != 1 or next(iter(spec)) not in table:
        raise ValueError(f"{what} spec is a dict with one key, one of "
                         f"{', '.join(sorted(table))}, and its keyword arguments; "
                         f"got {spec!r}.")
    (kind, kwargs), = spec.items()
    return table[kind](**{**defaults, **dict(kwargs or {})})


def get(name, **kwargs):
    """Builds method `name` with constructor keyword arguments `kwargs`.

    For a preset (`npid_cld`, `moco_v2_cld`, `byol_cld`; `mochi`, `ascl`,
    `xmoco`) the preset's defaults fill in what `kwargs` leaves out
    (`keras_ssl.methods.cld`, `keras_ssl.methods.transform_preset`).
    Objective specs in `objectives` are built for the encoder's width, and
    logit-transform specs in `logit_transforms` as `LOGIT_TRANSFORMS` says.

    Example:
    >>> from keras_ssl.backbones import tiny_backbone
    >>> get("simclr", encoder=tiny_backbone()).name
    'simclr'
    >>> model = get("moco_v2_cld", encoder=tiny_backbone(), num_groups=3)
    >>> type(model).__name__, model.objectives[0].num_groups
    ('MoCo', 3)
    """
    klass = method_class(name)
    kwargs.setdefault("name", name)
    if name in PRESETS:
        kwargs = PRESETS[name].arguments(kwargs)
    specs = kwargs.get("objectives") or ()
    if any(isinstance(spec, dict) for spec in specs):
        encoder = kwargs.get("encoder")
        if encoder is None:
            raise ValueError("Objectives given as specs are built for the encoder's width: "
                             "pass encoder= as a keyword.")
        kwargs["objectives"] = make_objectives(specs, int(encoder.output_shape[-1]))
    if kwargs.get("logit_transforms"):
        kwargs["logit_transforms"] = make_logit_transforms(kwargs["logit_transforms"])
    return klass(**kwargs)
