"""InterCLR (Xie, Zhan, Liu, Ong, Loy; IJCV 2022): recipes at every scale."""

from keras_ssl.configs import common, moco_v2


def cpu_small():
    # InterCLR: moco_v2's CPU entry (queue 4096, t=0.1 for both branches,
    # m=0.99) plus the official inter branch (weights 0.75/0.25, margin -0.5,
    # semi-hard negatives, min cluster 20, centroids every 10 steps). Sizes
    # scaled from ImageNet's N=1.28M: pool 10% of N (128,000) = 1,000,
    # negatives 1.28% of N (16,384) = 128, and K=100: ten clusters per
    # class as ImageNet's 10,000 for 1,000 classes (100 rows per cluster,
    # paper ~128; K <= N / (2 x 20) keeps every cluster >= 20).
    # Deviation for a 10-epoch run: one intra-only epoch, then the epoch
    # feature pass clusters the whole set (the official hook clusters the
    # untrained network's features before training, warm-up 0).
    base = moco_v2.cpu_small()
    return common.recipe(flags=base["flags"],
                         method=dict(base["method"], num_clusters=100, num_negatives=128,
                                     negative_pool_size=1000, inter_warmup_epochs=1.0))


def cifar10():
    # InterCLR has no CIFAR config: moco_v2's CIFAR entry plus the official
    # inter branch, sizes scaled as the CPU entry for N=50,000 (pool 5,000,
    # negatives 640, K=100), clustered before training as the official hook.
    base = moco_v2.cifar10()
    return common.recipe(flags=base["flags"],
                         method=dict(base["method"], num_clusters=100, num_negatives=640,
                                     negative_pool_size=5000, inter_warmup_epochs=0))


def imagenet():
    # InterCLR, mmselfsup 0.x configs/selfsup/interclr/ (interclr-moco.py,
    # sgd_coslr-200e_in1k): batch 256, SGD 0.03, wd 1e-4, cosine, 200
    # epochs, MoCo v2 aug, 2048-2048-128 head, queue 65536, t=0.2,
    # m=0.999, K=10,000, min cluster 20, 16,384 semi-hard negatives from
    # the top 128,000, margin -0.5, weights 0.75/0.25 (68.0% linear); the
    # hook clusters the untrained network's features before training
    # (warmup_epochs=0), which the epoch feature pass does here.
    return common.recipe(flags=dict(common.IMAGENET_FLAGS, epochs=200, global_batch_size=256,
                                    optimizer="sgd", learning_rate=0.03, weight_decay=1e-4,
                                    warmup_epochs=0),
                         method=dict(queue_size=65536, temperature=0.2, momentum=0.999,
                                     num_clusters=10000, min_cluster_size=20,
                                     num_negatives=16384, negative_pool_size=128000,
                                     inter_cos_margin=-0.5, intra_loss_weight=0.75,
                                     inter_loss_weight=0.25, inter_warmup_epochs=0))


def smoke():
    # 4 clusters of >= 2 in the run context's bank (32 rows in the tests),
    # clustered from the feature pass before training: both branches from
    # step 0.
    return common.recipe(flags=common.SMOKE_FLAGS,
                         method=dict(projection_dim=8, queue_size=12, momentum=0.9,
                                     num_clusters=4, min_cluster_size=2, num_negatives=6,
                                     negative_pool_size=16, inter_warmup_epochs=0))


RECIPES = dict(cpu_small=cpu_small, cifar10=cifar10, imagenet=imagenet, smoke=smoke)


def get(scale, smoke=False):
    """InterCLR's recipe at `scale`, or its test-size one with smoke (see `keras_ssl.configs`)."""
    return common.pick(RECIPES, scale, smoke)
