"""SimCLR (Chen, Kornblith, Norouzi, Hinton; ICML 2020): recipes at every scale."""

from keras_ssl.configs import common


def cpu_small():
    # lightly: SimCLRProjectionHead(feature, feature, 128), NTXent t=0.5,
    # SimCLRTransform(cj_strength=0.5, no blur).
    return common.recipe(flags=common.CPU_SMALL_FLAGS,
                         method=dict(projection_dim=128, temperature=0.5),
                         views=dict(jitter_strength=0.5))


def cifar10():
    # solo-learn cifar/simclr.yaml: LARS 0.4, wd 1e-5, proj 2048, t=0.2.
    return common.recipe(flags=dict(common.CIFAR10_FLAGS, epochs=1000, optimizer="lars",
                                    learning_rate=0.4, weight_decay=1e-5,
                                    warmup_epochs=10),
                         method=dict(projection_hidden_dim=2048, temperature=0.2),
                         views=dict(jitter_strength=0.5))


def imagenet():
    # SimCLR: LARS 0.3 x bs/256 (4.8 at 4096), wd 1e-6, t=0.1, 10 warm-up epochs.
    return common.recipe(flags=dict(common.IMAGENET_FLAGS, epochs=100,
                                    global_batch_size=4096, optimizer="lars",
                                    learning_rate=4.8, weight_decay=1e-6, warmup_epochs=10),
                         method=dict(temperature=0.1))


def smoke():
    return common.recipe(flags=common.SMOKE_FLAGS,
                         method=dict(projection_dim=8, temperature=0.5))


RECIPES = dict(cpu_small=cpu_small, cifar10=cifar10, imagenet=imagenet, smoke=smoke)


def get(scale, smoke=False):
    """SimCLR's recipe at `scale`, or its test-size one with smoke (see `keras_ssl.configs`)."""
    recipe = common.pick(RECIPES, scale, smoke)
    # SimCLR's TF code normalises with global_bn (cross-replica BatchNorm) in
    # the whole network.
    return recipe if smoke else common.synchronized_backbone(recipe)
