"""Presets of the binaries: the recipes of `keras_ssl.configs`, under their preset names.

Each method's recipes at every scale, with the sources of their values, live
in one module per method, `keras_ssl/configs/<method>.py`. This module keeps
the names the binaries' `--preset` flag takes:

- `cifar10_cpu_small` (also `cpu_small`): the CPU protocol,
- `cifar10`: full-width ResNet-18 on CIFAR-10,
- `imagenet`: ResNet-50 at 224 px.

A preset gives values to train.py flags (`flags`), the method's constructor
keyword arguments (`method`), and the view recipe's keyword arguments
(`views`). Flags given on the command line win over the preset.

Run one with
    python experiments/train.py --method=simclr --preset=cifar10_cpu_small \\
        --data=../shared/data/cifar10
"""

from keras_ssl import configs

PRESET_NAMES = ("cifar10_cpu_small", "cifar10", "imagenet")

# PRESETS[preset][method]: every recipe, for code that iterates over them.
PRESETS = {preset: {method: configs.get(preset, method) for method in configs.available(preset)}
           for preset in PRESET_NAMES}


def get(preset, method):
    """The preset entry for `method` (a fresh copy), or a ValueError naming valid choices."""
    return configs.get(preset, method)
