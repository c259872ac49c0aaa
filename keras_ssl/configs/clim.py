"""CLIM (Li, Zhang, Xiong; BMVC 2021): recipes at every scale.

CLIM's paper could not be read beyond its abstract and no code is public
(keras_ssl.methods.clim): k, the number of clusters, the lambda distribution
and the resolutions below are guesses, said beside each value; runs of these
recipes are "CLIM-like".
"""

from keras_ssl.configs import common, moco_v2

# The mixture's guessed settings, the same at every scale: 10 neighbours, CutMix's
# U(0, 1) lambda (alpha 1), the mixture term at weight 1, mixing from the second
# epoch on (shared/reference/methods-c.md section 7: "from epoch 2 on").
MIXING = dict(num_neighbours=10, mix_alpha=1.0, mix_loss_weight=1.0, mixing_start_epoch=1)


def cpu_small():
    # methods-c.md section 7's CPU recipe: moco_v2's CPU entry (R18/4, queue
    # 4096, m=0.99; t=0.1 as lightly's) plus the bank of EMA keys (10,000 x
    # 128 here), k-means and k-NN of the bank from epoch 2 on, and the query
    # again at 24 px beside 32 px. K=100: ten clusters per class, InterCLR's
    # CPU scaling (about 100 rows per cluster).
    base = moco_v2.cpu_small()
    return common.recipe(flags=base["flags"],
                         method=dict(base["method"], num_clusters=100, **MIXING),
                         views=dict(base="moco_v2", resolutions=(24,)))


def cifar10():
    # moco_v2's CIFAR entry (200 epochs, t=0.1, queue 4096), the mixture as
    # on CPU; K=100 for N=50,000 (500 rows per cluster); query also at 24 px.
    base = moco_v2.cifar10()
    return common.recipe(flags=base["flags"],
                         method=dict(base["method"], num_clusters=100, **MIXING),
                         views=dict(base="moco_v2", resolutions=(24,)))


def imagenet():
    # MoCo v2's ImageNet recipe (the paper's base; its 75.5% linear result is
    # with longer training, epochs not known here); K=1,000 (guessed: one
    # cluster per class, ~1,280 rows each); the resolutions the notes recall,
    # unverified: 224 plus 192/160/128/96.
    base = moco_v2.imagenet()
    return common.recipe(flags=base["flags"],
                         method=dict(base["method"], num_clusters=1000, **MIXING),
                         views=dict(base="moco_v2", resolutions=(192, 160, 128, 96)))


def smoke():
    # moco_v2's test size; 4 clusters and 4 neighbours in the run context's
    # 32-row bank, refreshed before the first epoch so that the one-epoch
    # test run moves the table; one 12-px copy of the 16-px query.
    base = moco_v2.smoke()
    return common.recipe(flags=base["flags"],
                         method=dict(base["method"], num_clusters=4, num_neighbours=4,
                                     mixing_start_epoch=0, kmeans_iterations=10),
                         views=dict(base="moco_v2", resolutions=(12,)))


RECIPES = dict(cpu_small=cpu_small, cifar10=cifar10, imagenet=imagenet, smoke=smoke)


def get(scale, smoke=False):
    """CLIM's recipe at `scale`, or its test-size one with smoke (see `keras_ssl.configs`)."""
    return common.pick(RECIPES, scale, smoke)
