"""Supervised CMSF (Navaneet et al.; ECCV 2022): recipes at every scale.

MSF's recipes (`keras_ssl.configs.msf`) with CMSF's supervised k; the class
labels come with each batch, not from the config.
"""

from keras_ssl.configs import common, msf


def cpu_small():
    # Supervised CMSF (run_supervised.sh: k=10, m 0.99, weak/strong): the
    # MSF entry's heads and bank; it trains on the class labels.
    return common.recipe(flags=common.CPU_SMALL_FLAGS, method=dict(msf.CPU_SMALL_METHOD, topk=10))


def cifar10():
    # MSF's borrowed CIFAR recipe (see msf.CIFAR10_FLAGS) with k=10.
    return common.recipe(flags=msf.CIFAR10_FLAGS,
                         method=dict(momentum=0.99, queue_size=16384, topk=10))


def imagenet():
    # Supervised CMSF (run_supervised.sh): CMSF-2Q's bank 128,000 with k=10
    # and labels.
    return common.recipe(flags=msf.IMAGENET_FLAGS,
                         method=dict(momentum=0.99, queue_size=128000, topk=10))


def smoke():
    # The classes come with the batches (index % 3 in the tests).
    return common.recipe(flags=common.SMOKE_FLAGS, method=msf.SMOKE_METHOD)


RECIPES = dict(cpu_small=cpu_small, cifar10=cifar10, imagenet=imagenet, smoke=smoke)


def get(scale, smoke=False):
    """Supervised CMSF's recipe at `scale`, or its test-size one with smoke."""
    return common.pick(RECIPES, scale, smoke)
