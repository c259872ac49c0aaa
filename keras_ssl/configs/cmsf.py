"""CMSF: Constrained Mean Shift (Navaneet et al.; ECCV 2022): recipes at every scale.

MSF's recipes (`keras_ssl.configs.msf`) with CMSF's constraint.
"""

from keras_ssl.configs import common, msf


def cpu_small():
    # MSF's cpu_small entry plus the 2Q constraint with k'=5 (run_selfsup.sh),
    # CMSF's best ImageNet variant.
    return common.recipe(flags=common.CPU_SMALL_FLAGS,
                         method=dict(msf.CPU_SMALL_METHOD, constraint="previous_epoch",
                                     constraint_topk=5))


def cifar10():
    # MSF's borrowed CIFAR recipe (see msf.CIFAR10_FLAGS) with k'=5.
    return common.recipe(flags=msf.CIFAR10_FLAGS,
                         method=dict(momentum=0.99, queue_size=16384, topk=5,
                                     constraint="previous_epoch", constraint_topk=5))


def imagenet():
    # CMSF-2Q (UCDvision/CMSF run_selfsup.sh): as MSF with bank 128,000,
    # k=5, k'=5, weak/strong (73.0% linear).
    return common.recipe(flags=msf.IMAGENET_FLAGS,
                         method=dict(momentum=0.99, queue_size=128000, topk=5,
                                     constraint="previous_epoch", constraint_topk=5))


def smoke():
    # CMSF-KM (the 2Q constraint runs in tests/methods/test_msf.py): k-means
    # refreshes the pseudo-labels at the end of each step, so step 1 uses
    # other labels than step 0.
    return common.recipe(flags=common.SMOKE_FLAGS,
                         method=dict(msf.SMOKE_METHOD, constraint="pseudo_label",
                                     num_clusters=3, cluster_every_steps=1, cluster_iters=3))


RECIPES = dict(cpu_small=cpu_small, cifar10=cifar10, imagenet=imagenet, smoke=smoke)


def get(scale, smoke=False):
    """CMSF's recipe at `scale`, or its test-size one with smoke (see `keras_ssl.configs`)."""
    return common.pick(RECIPES, scale, smoke)
