"""Configs: each method's recipes at every scale, runnable documentation.

One module per registered method (`keras_ssl.configs.<name>`, `<name>` as in
`keras_ssl.methods.available()`), each with `get(scale, smoke=False)`
returning `dict(flags=..., method=..., views=...)` (see `common`):

- `cpu_small`: the CPU protocol of shared/reference/published-results.md
  (ResNet-18 CIFAR stem at width 0.25, 1,000 images per class, 32-px views,
  batch 256, 10 epochs, no blur), each method with lightly's CIFAR-10
  benchmark recipe (SGD 0.06 x batch/128, momentum 0.9, weight decay 5e-4,
  cosine), the peer we compare against. `--preset=cifar10_cpu_small`.
- `cifar10`: full-width ResNet-18 on CIFAR-10, the solo-learn / paper recipes.
- `imagenet`: ResNet-50 at 224 px, the papers' ImageNet recipes.
- `smoke=True`: the same recipe shrunk to the size of the unit tests (tiny
  CNN, 16-px views, batches of 8), the same at every scale. Run-dependent
  values come from a `keras_ssl.methods.RunContext`.

The comments beside the values give their sources. Adding a method means one
method file, one config module here and one registry line.

Example:
>>> config = get("cifar10_cpu_small", "simclr")
>>> config["method"]
{'projection_dim': 128, 'temperature': 0.5}

Run one with
    python experiments/train.py --method=simclr --preset=cifar10_cpu_small \\
        --data=../shared/data/cifar10
or build the method of a config:
    keras_ssl.methods.get("npid_cld", encoder=encoder,
                          run=keras_ssl.methods.RunContext(num_examples=50000, ...),
                          **get("cifar10", "npid_cld")["method"])
"""

import importlib
import pkgutil

from keras_ssl.configs.common import PRESET_NAMES, SCALES, scale_of

# Modules of this package that are not a method's config.
_SHARED_MODULES = ("common",)


def methods():
    """Names of the methods with a config module, sorted."""
    return sorted(info.name for info in pkgutil.iter_modules(__path__)
                  if not info.name.startswith("_") and info.name not in _SHARED_MODULES)


def module(method):
    """The config module of `method` (e.g. `keras_ssl.configs.moco_v2`)."""
    if method not in methods():
        raise ValueError(f"--method={method!r} has no config module in keras_ssl/configs; "
                         f"configs exist for {', '.join(methods())}.")
    return importlib.import_module(f"{__name__}.{method}")


def available(preset=None):
    """Methods with a recipe at `preset` (any valid preset name; None: at every scale)."""
    if preset is not None:
        scale_of(preset)  # a ValueError naming the valid presets
    return methods()


def get(preset, method, smoke=False):
    """The recipe of `method` at `preset`: `dict(flags=..., method=..., views=...)`.

    Args:
        preset: a scale ("cpu_small", "cifar10", "imagenet") or the CPU
            protocol's preset name "cifar10_cpu_small".
        method: a registry name (`keras_ssl.methods.available()`).
        smoke: the test-size recipe instead (flags of a tiny run, the
            smallest constructor arguments that run every branch).

    Returns a fresh copy; raises ValueError naming the valid choices.
    """
    scale = scale_of(preset)
    if method not in methods():
        raise ValueError(f"--preset={preset} has no entry for --method={method}; "
                         f"it covers {', '.join(available(preset))}.")
    return module(method).get(scale, smoke=smoke)


def background(method):
    """`method`'s background augmentation probabilities (`BackgroundConfig` fields), or {}.

    The same at every scale: the config module's ``BACKGROUND``, for the
    methods the paper (Ryali et al., arXiv 2103.12719) trains with it.
    """
    return dict(getattr(module(method), "BACKGROUND", {}))


__all__ = ["PRESET_NAMES", "SCALES", "available", "background", "get", "methods", "module",
           "scale_of"]
