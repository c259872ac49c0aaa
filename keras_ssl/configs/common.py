"""What the method configs share: the scales, the flags of each scale, the recipe format.

A recipe is `dict(flags=..., method=..., views=...)`:

- `flags`: values of the training flags (`experiments/train.py`, the
  trainer's arguments) at this scale; flags given on a command line win.
- `method`: the method's constructor keyword arguments (config keys equal
  constructor arguments). Objectives are specs, `{"cld": {...}}`, which
  `keras_ssl.methods.get` builds for the encoder's width. Run-dependent
  values (training-set size, total steps) are not here: they come from the
  run context (`keras_ssl.methods.RunContext`), labels from the batch.
- `views`: keyword arguments of the method's view recipe
  (`keras_ssl.augment.RECIPES[method_class.recipe_name]`).
"""

import copy

SCALES = ("cpu_small", "cifar10", "imagenet")

# Preset names accepted for each scale (`--preset=`): the scale itself, and
# the name the CPU protocol had in experiments/presets.py.
PRESET_NAMES = {"cpu_small": "cpu_small", "cifar10_cpu_small": "cpu_small",
                "cifar10": "cifar10", "imagenet": "imagenet"}

# The CPU protocol of shared/reference/published-results.md: ResNet-18 CIFAR
# stem at width 0.25, 1,000 images per class, 32-px views, batch 256, 10
# epochs, no blur, each method with lightly's CIFAR-10 benchmark recipe (SGD
# 0.06 x batch/128, momentum 0.9, weight decay 5e-4, cosine), the peer we
# compare against.
CPU_SMALL_FLAGS = dict(
    backbone="resnet18", width_multiplier=0.25, image_size=32, train_per_class=1000,
    epochs=10, global_batch_size=256, optimizer="sgd", learning_rate=0.12,
    weight_decay=5e-4, warmup_epochs=0, blur=False)

# Full-width ResNet-18 on CIFAR-10, the solo-learn / paper recipes.
CIFAR10_FLAGS = dict(backbone="resnet18", width_multiplier=1.0, image_size=32,
                     train_per_class=0, global_batch_size=256, blur=False)

# ResNet-50 at 224 px, the papers' ImageNet recipes.
IMAGENET_FLAGS = dict(backbone="resnet50", width_multiplier=1.0, image_size=224,
                      train_per_class=0, blur=True)

# smoke=True: the size of the unit tests (tests/methods/harness.py): the tiny
# CNN at width 4 (half its 8 channels), 16-px views, batches of 8, one epoch,
# plain SGD 0.1 without weight decay. The method arguments beside it are the
# smallest that still run every branch of the method.
SMOKE_FLAGS = dict(
    backbone="tiny", width_multiplier=0.5, image_size=16, train_per_class=4,
    epochs=1, global_batch_size=8, optimizer="sgd", learning_rate=0.1,
    weight_decay=0.0, warmup_epochs=0, blur=False)

# Background augmentation (Ryali, Schwab, Morcos, arXiv 2103.12719), used by
# the configs of MoCo v2, BYOL and SwAV, the paper's three methods. Its body
# could not be read, so these are methods-c.md section 3's CPU recipe, the
# only numbers the notes give (guesses for the paper's): BG_RM with p=0.2 and
# BG_Random with p=0.1 on every view, most views untouched. Methods with
# negatives add BG_Swaps: an extra negative for every anchor ("BG_Swaps adds
# one extra negative per anchor") and the positive on another background as
# often as BG_Random (a guess).
BACKGROUND = dict(remove=0.2, random=0.1)
BACKGROUND_WITH_NEGATIVES = dict(BACKGROUND, swap_positive=0.1, swap_negative=1.0)


def scale_of(preset):
    """The scale a preset name means ("cifar10_cpu_small" -> "cpu_small"), or a ValueError."""
    if preset not in PRESET_NAMES:
        raise ValueError(
            f"--preset={preset!r} is not one of cpu_small (also cifar10_cpu_small), "
            f"cifar10, imagenet.")
    return PRESET_NAMES[preset]


def recipe(flags=None, method=None, views=None):
    """A recipe dict with its three parts, each a fresh copy."""
    return dict(flags=copy.deepcopy(dict(flags or {})),
                method=copy.deepcopy(dict(method or {})),
                views=copy.deepcopy(dict(views or {})))


def synchronized_backbone(recipe):
    """`recipe` with the backbone's BatchNorm over the global batch (`synchronized_bn`).

    For methods whose official code synchronises BatchNorm in the whole
    network across devices; with one replica it changes nothing.
    """
    recipe["flags"]["synchronized_bn"] = True
    return recipe


def with_objective(base, kind, **kwargs):
    """`base` recipe with one more objective spec, `{kind: kwargs}`, in its method arguments."""
    result = recipe(**base)
    result["method"]["objectives"] = [*result["method"].get("objectives", ()),
                                      {kind: dict(kwargs)}]
    return result


def pick(recipes, scale, smoke=False):
    """The recipe of `scale` from a config module's `RECIPES` (its "smoke" one with smoke).

    `recipes` maps every scale and "smoke" to a function returning a recipe;
    the result is a fresh copy, so callers may change it.
    """
    scale = scale_of(scale)  # checked with smoke too: a typo should not pass in tests
    return recipe(**recipes["smoke" if smoke else scale]())
