"""BYOL+CLD (Wang, Liu, Yu; CVPR 2021): BYOL with the CLD objective, at every scale.

The paper reports BYOL+CLD but the official repository has no BYOL code or
script, so every recipe is BYOL's (`keras_ssl.configs.byol`) plus CLD values
borrowed from another base: NPID+CLD's on CIFAR, MoCo v2+CLD's on ImageNet.
`methods.get("byol", ...)` with them builds the same model as
`methods.get("byol_cld", ...)` (`keras_ssl.methods.cld`).
"""

from keras_ssl.configs import byol, common, moco_v2_cld, npid_cld


def cpu_small():
    # BYOL's CPU entry plus NPID+CLD's CIFAR-10 values.
    return common.with_objective(byol.cpu_small(), "cld", **npid_cld.CLD_CIFAR10)


def cifar10():
    # solo-learn's CIFAR BYOL plus NPID+CLD's CIFAR-10 values.
    return common.with_objective(byol.cifar10(), "cld", **npid_cld.CLD_CIFAR10)


def imagenet():
    # BYOL's 300-epoch entry plus MoCo v2+CLD's ImageNet K, T_cld, lambda and
    # NormMLP group head.
    return common.with_objective(byol.imagenet(), "cld", **moco_v2_cld.CLD_IMAGENET)


def smoke():
    # 3 groups over the global batch of 8 (first-3 initialisation).
    return common.with_objective(byol.smoke(), "cld", num_groups=3, group_dim=8)


RECIPES = dict(cpu_small=cpu_small, cifar10=cifar10, imagenet=imagenet, smoke=smoke)


def get(scale, smoke=False):
    """BYOL+CLD's recipe at `scale`, or its test-size one with smoke."""
    recipe = common.pick(RECIPES, scale, smoke)
    # BYOL's code uses cross-replica BatchNorm in the whole network.
    return recipe if smoke else common.synchronized_backbone(recipe)
