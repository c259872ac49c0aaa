"""SwAV (Caron et al., NeurIPS 2020): recipes at every scale."""

from keras_ssl.configs import common

# The paper's method: background augmentation's probabilities (--background).
BACKGROUND = common.BACKGROUND


def cpu_small():
    # SwAV: lightly's CIFAR head (512 hidden, 128-d, 512 prototypes); tau 0.1,
    # eps 0.05, 3 Sinkhorn iterations (paper). Multi-crop 2x32 + 4x16: four
    # 16-px crops cost one 32-px crop, the local/global compute ratio of the
    # paper's 6x96 beside 2x224. Prototypes frozen 1 epoch (39 steps of
    # 10,000 images at batch 256); no queue (batch 256 vs 512 prototypes).
    return common.recipe(flags=common.CPU_SMALL_FLAGS,
                         method=dict(projection_hidden_dim=512, projection_dim=128,
                                     num_prototypes=512, freeze_prototypes_steps=39),
                         views=dict(local_size=16, num_local=4, jitter_strength=0.5))


def cifar10():
    # solo-learn cifar/swav.yaml: LARS 0.6, wd 1e-6, 2 crops (no multi-crop,
    # blur p=0.5), 3000 prototypes, queue 3840 from epoch 50 (9,750 steps of
    # 195), prototypes frozen 2 epochs (390 steps).
    return common.recipe(flags=dict(common.CIFAR10_FLAGS, epochs=1000, optimizer="lars",
                                    learning_rate=0.6, weight_decay=1e-6, warmup_epochs=10,
                                    blur=True),
                         method=dict(projection_hidden_dim=2048, freeze_prototypes_steps=390,
                                     queue_length=3840, queue_start_steps=9750),
                         views=dict(num_local=0, global_scale=(0.08, 1.0)))


def imagenet():
    # SwAV 800 epochs, batch 4096: LARS 4.8, wd 1e-6, 10 warm-up epochs,
    # 2x224 + 6x96, prototypes frozen 313 steps, no queue (75.3% linear).
    return common.recipe(flags=dict(common.IMAGENET_FLAGS, epochs=800, global_batch_size=4096,
                                    optimizer="lars", learning_rate=4.8, weight_decay=1e-6,
                                    warmup_epochs=10),
                         method=dict(freeze_prototypes_steps=313))


def smoke():
    # Prototypes frozen for step 0 only; the queue fills on step 0 and is used
    # on step 1, so a 2-step run goes through both branches. Two 16-px crops
    # and one 8-px local crop.
    return common.recipe(flags=common.SMOKE_FLAGS,
                         method=dict(projection_hidden_dim=16, projection_dim=8,
                                     num_prototypes=6, freeze_prototypes_steps=1,
                                     queue_length=8, queue_start_steps=0),
                         views=dict(local_size=8, num_local=1))


RECIPES = dict(cpu_small=cpu_small, cifar10=cifar10, imagenet=imagenet, smoke=smoke)


def get(scale, smoke=False):
    """SwAV's recipe at `scale`, or its test-size one with smoke (see `keras_ssl.configs`)."""
    recipe = common.pick(RECIPES, scale, smoke)
    # SwAV's runs use --sync_bn (the whole network's BatchNorm synchronised).
    return recipe if smoke else common.synchronized_backbone(recipe)
