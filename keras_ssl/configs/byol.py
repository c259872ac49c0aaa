"""BYOL (Grill et al., NeurIPS 2020): recipes at every scale."""

from keras_ssl.configs import common

# The paper's method: background augmentation's probabilities (--background).
BACKGROUND = common.BACKGROUND


def cpu_small():
    # lightly: BYOL heads 1024 -> 256, momentum 0.996 -> 1 (cosine).
    return common.recipe(flags=common.CPU_SMALL_FLAGS,
                         method=dict(projection_hidden_dim=1024, projection_dim=256,
                                     prediction_hidden_dim=1024, base_momentum=0.996))


def cifar10():
    # solo-learn cifar/byol.yaml: LARS 1.0, wd 1e-5, tau 0.99 -> 1.
    return common.recipe(flags=dict(common.CIFAR10_FLAGS, epochs=1000, optimizer="lars",
                                    learning_rate=1.0, weight_decay=1e-5, warmup_epochs=10),
                         method=dict(base_momentum=0.99))


def imagenet():
    # BYOL 300-epoch preset: LARS 0.3 x bs/256, wd 1e-6, tau 0.99.
    return common.recipe(flags=dict(common.IMAGENET_FLAGS, epochs=300, global_batch_size=4096,
                                    optimizer="lars", learning_rate=4.8, weight_decay=1e-6,
                                    warmup_epochs=10),
                         method=dict(base_momentum=0.99))


def smoke():
    # tau goes 0.9 -> 1 over the run context's total steps.
    return common.recipe(flags=common.SMOKE_FLAGS,
                         method=dict(projection_hidden_dim=16, projection_dim=8,
                                     prediction_hidden_dim=16, base_momentum=0.9))


RECIPES = dict(cpu_small=cpu_small, cifar10=cifar10, imagenet=imagenet, smoke=smoke)


def get(scale, smoke=False):
    """BYOL's recipe at `scale`, or its test-size one with smoke (see `keras_ssl.configs`)."""
    recipe = common.pick(RECIPES, scale, smoke)
    # BYOL's code uses cross-replica BatchNorm in the whole network.
    return recipe if smoke else common.synchronized_backbone(recipe)
