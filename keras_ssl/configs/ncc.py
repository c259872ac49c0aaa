"""NCC / ProPos (Huang et al., TPAMI 2022): recipes at every scale.

Sources: Hzzone/ProPos @cc35d8ca, config/cifar10_r18_propos.yml and
config/propos_imagenet_r50_8xbs32xaccum16_200e.yml, with the options of
models/propos/byol.py and models/basic_template.py; the CPU recipe is
methods-c.md §6 "smallest faithful CPU recipe". The official learning rate
is `learning_rate x total batch / 256` (basic_template.py:30-33); the flags
below hold the product. The official `warmup_epochs` warms up the learning
rate and holds lambda and sigma at 0: the flag and
`clustering_warmup_epochs` carry it together.

Views: ProPos' SimCLR-style transform without blur (basic_template.py:250-268:
crop scale (0.08, 1), flip, jitter (0.4, 0.4, 0.4, 0.1) with p 0.8, grey 0.2),
which is the "simclr" recipe at jitter strength 0.5; blur (p 0.5) where the
config sets `use_gaussian_blur`.
"""

from keras_ssl.configs import common

VIEWS = dict(jitter_strength=0.5)


def cpu_small():
    # methods-c.md §6: heads 1024 -> 256, tau 0.5, lambda 0.1, sigma 0.001,
    # EMA 0.996 constant, K = 10 classes. The protocol's flags (data, R18/4,
    # 32 px, batch 256, 10 epochs, no blur) are kept; the method's own SGD
    # 0.05 x 256/256 and wd 5e-4 (the protocol's 0.12 is lightly's rate for
    # SimCLR-like recipes), and 1 warm-up epoch (the official 50 of 1000,
    # scaled, at least 1) for both the learning rate and lambda / sigma.
    # Deviations: the E-step clusters the 10,000 training images only (the
    # official whole_dataset adds the test split), and the cosine decays to 0.
    return common.recipe(flags=dict(common.CPU_SMALL_FLAGS, learning_rate=0.05,
                                    weight_decay=5e-4, warmup_epochs=1),
                         method=dict(projection_hidden_dim=1024, projection_dim=256,
                                     prediction_hidden_dim=1024, num_clusters=10,
                                     temperature=0.5, prototype_loss_weight=0.1,
                                     positive_sampling_std=0.001, base_momentum=0.996,
                                     clustering_warmup_epochs=1),
                         views=VIEWS)


def cifar10():
    # config/cifar10_r18_propos.yml: bigresnet18, batch 128 x 4 GPUs, SGD
    # 0.05 x 512/256 = 0.1, wd 5e-4 (on every variable), 50 warm-up epochs,
    # 1000 epochs, heads 4096 -> 256, EMA 0.996 constant, tau 0.5, lambda
    # 0.1, sigma 0.001, predictor lr x10, E-step every epoch, no blur. Its
    # BatchNorm is per GPU (no syncbn; shuffled BN in the target), so the heads
    # are not synchronised either. On its 4 GPUs the official ProtoCL gradient
    # is lambda / 4 (see keras_ssl.methods.ncc); lambda stays the config's.
    return common.recipe(flags=dict(common.CIFAR10_FLAGS, epochs=1000, global_batch_size=512,
                                    optimizer="sgd", learning_rate=0.1, weight_decay=5e-4,
                                    warmup_epochs=50),
                         method=dict(num_clusters=10, temperature=0.5,
                                     prototype_loss_weight=0.1, positive_sampling_std=0.001,
                                     base_momentum=0.996, clustering_warmup_epochs=50,
                                     synchronized_bn=False),
                         views=VIEWS)


def imagenet():
    # config/propos_imagenet_r50_8xbs32xaccum16_200e.yml: ResNet-50, batch
    # 32 x 8 GPUs x 16 accumulation = 4096, LARS 0.3 x 4096/256 = 4.8, wd
    # 1e-6 without biases and BN, 10 warm-up epochs, 200 epochs, EMA 0.99 ->
    # 1 (cosine), syncbn, blur, K = 1000 classes, E-step every 10 epochs,
    # lambda 0.001, sigma 0.0001, tau 0.5 (default). Deviations: its queue of
    # 10,240 past keys for the centres and its one-directional loss (no
    # `--symmetric`) are not reproduced (symmetric, batch centres only), and
    # under LARS the predictor's x10 reaches only its biases and BN (see
    # keras_ssl.methods.ncc).
    return common.recipe(flags=dict(common.IMAGENET_FLAGS, epochs=200, global_batch_size=4096,
                                    optimizer="lars", learning_rate=4.8, weight_decay=1e-6,
                                    warmup_epochs=10),
                         method=dict(num_clusters=1000, temperature=0.5,
                                     prototype_loss_weight=0.001, positive_sampling_std=0.0001,
                                     base_momentum=0.99, final_momentum=1.0,
                                     clustering_warmup_epochs=10, reassign_epochs=10),
                         views=VIEWS)  # blur: the ImageNet flags' blur=True


def smoke():
    # 4 clusters of the run context's 32 examples, clustered before training
    # with no warm-up, so noise and ProtoCL act from step 0; tau 0.9 constant.
    return common.recipe(flags=common.SMOKE_FLAGS,
                         method=dict(projection_hidden_dim=16, projection_dim=8,
                                     prediction_hidden_dim=16, num_clusters=4,
                                     base_momentum=0.9, clustering_warmup_epochs=0),
                         views=VIEWS)


RECIPES = dict(cpu_small=cpu_small, cifar10=cifar10, imagenet=imagenet, smoke=smoke)


def get(scale, smoke=False):
    """NCC's recipe at `scale`, or its test-size one with smoke (see `keras_ssl.configs`)."""
    recipe = common.pick(RECIPES, scale, smoke)
    # The ImageNet config converts the whole network to SyncBatchNorm.
    return common.synchronized_backbone(recipe) if scale == "imagenet" and not smoke else recipe
