"""Presets of contrastive methods that add a logit transform (MoCHi, ASCL, XMoCo).

A variant that only changes how a contrastive loss treats its logits is its
base method with a `LogitTransform` (`keras_ssl.losses.logit_transforms`):

    MoCo(encoder, logit_transforms=[HardNegativeMixing(num_hard=256, ...)])

or, from a config, a spec the registry builds:

    methods.get("moco_v2", encoder=encoder,
                logit_transforms=[{"mochi": {"num_hard": 256}}])

A registry name such as `mochi` is a `TransformPreset`: the base method, the
transform with its default arguments and defaults for the base's own
arguments. Precedence: the preset's transform defaults, then a spec of the
same kind in `logit_transforms`; the caller's method arguments win over the
preset's method defaults. A built transform of the preset's class is used as
it is.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class TransformPreset:
    """A registered base method with one logit transform and default arguments.

    Attributes:
        base: registry name of the base method.
        transform: the `LogitTransform` subclass; its `spec_name` is the
            spec's key.
        defaults: the transform's keyword arguments by default.
        method_defaults: defaults of the base method's own arguments.
        doc: where the defaults come from.
    """

    base: str
    transform: type
    defaults: dict = dataclasses.field(default_factory=dict)
    method_defaults: dict = dataclasses.field(default_factory=dict)
    doc: str = ""

    def arguments(self, kwargs):
        """The base class's keyword arguments for a call with `kwargs`."""
        kwargs = dict(kwargs)
        key = self.transform.spec_name
        transforms = list(kwargs.get("logit_transforms") or ())
        position = next((i for i, item in enumerate(transforms)
                         if isinstance(item, self.transform)
                         or (isinstance(item, dict) and key in item)), None)
        if position is None:
            transforms.insert(0, {key: dict(self.defaults)})
        elif isinstance(transforms[position], dict):
            transforms[position] = {key: {**self.defaults,
                                          **(transforms[position][key] or {})}}
        kwargs["logit_transforms"] = transforms
        for name, value in self.method_defaults.items():
            kwargs.setdefault(name, value)
        return kwargs
