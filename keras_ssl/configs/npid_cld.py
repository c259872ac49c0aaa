"""NPID+CLD (Wang, Liu, Yu; CVPR 2021): NPID with the CLD objective, at every scale.

Each recipe is NPID's (`keras_ssl.configs.npid`) plus a CLD objective, so
`methods.get("npid", ...)` with it builds the same model as
`methods.get("npid_cld", ...)` (`keras_ssl.methods.cld`).
"""

from keras_ssl.configs import common, moco_v2_cld, npid

# CLD's NPID values from its official CIFAR scripts
# (frank-xwang/CLD-UnsupervisedLearning, scripts/cifar/*). K=128 is kept on
# the CPU protocol although it has 10 classes and batch 256: it is the
# official CIFAR-10 value, and K counts local groups, not classes.
CLD_CIFAR10 = dict(num_groups=128, temperature=0.2, weight=1.0, head="linear")


def cpu_small():
    # NPID's CPU entry plus CLD with the official CIFAR-10 values.
    return common.with_objective(npid.cpu_small(), "cld", **CLD_CIFAR10)


def cifar10():
    # NPID+CLD train_cifar10_npid_cld.sh: batch 256, lr 0.03 x 256/128, wd 7e-4,
    # 5 warm-up epochs, cosine, 200 epochs, t=0.1, full softmax, fp16:
    # NPID's CIFAR entry plus CLD.
    return common.with_objective(npid.cifar10(), "cld", **CLD_CIFAR10)


def imagenet():
    # No official ImageNet NPID+CLD script: NPID's entry plus MoCo v2+CLD's
    # ImageNet K, T_cld and lambda (NPID keeps a Linear group head like its
    # Linear instance head).
    return common.with_objective(npid.imagenet(), "cld",
                                 **dict(moco_v2_cld.CLD_IMAGENET, head="linear"))


def smoke():
    # 3 groups over the global batch of 8 (first-3 initialisation).
    return common.with_objective(npid.smoke(), "cld", num_groups=3, group_dim=8)


RECIPES = dict(cpu_small=cpu_small, cifar10=cifar10, imagenet=imagenet, smoke=smoke)


def get(scale, smoke=False):
    """NPID+CLD's recipe at `scale`, or its test-size one with smoke."""
    return common.pick(RECIPES, scale, smoke)
