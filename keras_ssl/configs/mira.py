"""MIRA (Lee, Choi, Kim, Chung; NeurIPS 2022): recipes at every scale."""

from keras_ssl.configs import common


def cpu_small():
    # MIRA: the paper's temperatures, beta and teacher schedule; a 512-wide
    # projector and 300 prototypes for batch 256 (methods-b.md); head frozen
    # 1 epoch; the CIFAR views of the official loader (CIFARTransform: two
    # 32-px crops of scale (0.2, 1), solarize on the second, no local crops);
    # the official encoder's zeroed residual branches (build_encoder(...,
    # zero_init_residual=True)), which double the agreement of the two
    # views' targets at the start (measured, see README).
    return common.recipe(flags=dict(common.CPU_SMALL_FLAGS, zero_init_residual=True),
                         method=dict(projection_hidden_dim=512, projection_dim=256,
                                     num_prototypes=300, freeze_prototypes_steps=39),
                         views=dict(num_local=0, global_scale=(0.2, 1.0)))


def cifar10():
    # No CIFAR schedule from the MIRA authors: their lr rule (LARS 0.3 x
    # bs/256, wd 1e-6, 10 warm-up epochs) for solo-learn's 1000 epochs, the
    # paper's head and schedules, head frozen 1 epoch, and the CIFAR views
    # of their loader (src/loader.py CIFARTransform: two 32-px crops of
    # scale (0.2, 1), solarize on the second, no blur, no local crops).
    return common.recipe(flags=dict(common.CIFAR10_FLAGS, epochs=1000, optimizer="lars",
                                    zero_init_residual=True, learning_rate=0.3,
                                    weight_decay=1e-6, warmup_epochs=10),
                         method=dict(freeze_prototypes_steps=195),
                         views=dict(num_local=0, global_scale=(0.2, 1.0)))


def imagenet():
    # MIRA 400 epochs, batch 4096: LARS 0.3 x 16, wd 1e-6, 10 warm-up epochs,
    # 2x224 + 6x96, head frozen 1 epoch (312 steps), zero-init residual
    # (75.6% linear).
    return common.recipe(flags=dict(common.IMAGENET_FLAGS, epochs=400, global_batch_size=4096,
                                    zero_init_residual=True, optimizer="lars",
                                    learning_rate=4.8, weight_decay=1e-6, warmup_epochs=10),
                         method=dict(freeze_prototypes_steps=312))


def smoke():
    # Prototypes frozen for step 0 only; 5 MIRA iterations; the teacher's tau
    # goes 0.9 -> 1 over the run context's total steps. Two 16-px crops and
    # one 8-px local crop (the tiny CNN has no residual branches to zero).
    return common.recipe(flags=common.SMOKE_FLAGS,
                         method=dict(projection_hidden_dim=16, projection_dim=8,
                                     num_prototypes=6, num_iters=5, base_momentum=0.9,
                                     freeze_prototypes_steps=1),
                         views=dict(local_size=8, num_local=1))


RECIPES = dict(cpu_small=cpu_small, cifar10=cifar10, imagenet=imagenet, smoke=smoke)


def get(scale, smoke=False):
    """MIRA's recipe at `scale`, or its test-size one with smoke (see `keras_ssl.configs`)."""
    recipe = common.pick(RECIPES, scale, smoke)
    # MIRA's train.py converts every BatchNorm with convert_sync_batchnorm.
    return recipe if smoke else common.synchronized_backbone(recipe)
