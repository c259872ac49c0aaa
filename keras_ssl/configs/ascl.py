"""ASCL (Feng and Patras; ICPR 2022): MoCo with adaptive soft targets, at every scale.

Built by `keras_ssl.methods.get("ascl", ...)`: `MoCo` with the logit
transform `SoftNeighbourTargets` (`keras_ssl.methods.ascl`). The recipes
spell out the transform's arguments and MoCo's, so
`methods.get("moco_v2", ...)` with them builds the same model.

Sources: MrChenFeng/ASCL_ICPR2022 @b31e15b5, `main.py` arguments (lines
21-48), `model.py`, `dataloader.py`, `utils.py` (warm-up then cosine, per
iteration) and `ImageNet-1K/builder.py`.
"""

from keras_ssl.configs import common, moco_v2

# main.py: --type ascl, --t2 0.05, --K 1 (the number of neighbours; the
# README's CIFAR-100 run uses --K 5).
ASCL = dict(type="ascl", relation_temperature=0.05, nn_num=1)

# dataloader.py `TwoCrop(weak, strong)` returns (strong, weak) and
# `net(im_1, im_2)` makes them (query, key): the key is the weak view
# (RandomResizedCrop(0.2, 1) + flip), the query MoCo v2's aug+.
WEAK_KEY_VIEWS = dict(weak_key=True)


def _with_ascl(method, **transform):
    return dict(method, logit_transforms=[{"ascl": dict(ASCL, **transform)}])


def cpu_small():
    # moco_v2's CPU entry (lightly's head, queue 4096, t=0.1, which is ASCL's
    # T1, m=0.99, as the official CIFAR code) plus ASCL's soft targets, its
    # weak key view and its SplitBatchNorm(8) (model.py:48,52; batch 256 ->
    # sub-batches of 32). The protocol's flags (10 epochs, no warm-up, lr
    # 0.12, no blur) are moco_v2's, for a fair comparison; the official head
    # is 512-2048-128, here lightly's 128-128-128 as in moco_v2's entry.
    # (moco_v2's entry keeps plain BatchNorm: the same run with type="normal"
    # is the ablation that changes only the targets.)
    base = moco_v2.cpu_small()
    return common.recipe(flags=dict(base["flags"], split_batch_norm=8),
                         method=_with_ascl(base["method"]), views=WEAK_KEY_VIEWS)


def cifar10():
    # main.py defaults: ResNet-18 CIFAR stem with SplitBatchNorm(8), batch
    # 256, SGD lr 0.03 (momentum 0.9), wd 5e-4, 200 epochs, 5 epochs of
    # linear warm-up then cosine; m=0.99, queue 4096, T1=0.1; projector
    # Linear(512, 2048)-ReLU-Linear(2048, 128) without BN (model.py:72-76);
    # strong aug+ with blur p=0.5 at 32 px (dataloader.py:218-246). The key
    # batch is shuffled before the split key encoder (model.py:176):
    # shuffle_bn.
    return common.recipe(
        flags=dict(common.CIFAR10_FLAGS, epochs=200, optimizer="sgd", learning_rate=0.03,
                   weight_decay=5e-4, warmup_epochs=5, blur=True, split_batch_norm=8),
        method=_with_ascl(dict(projection_hidden_dim=2048, projection_dim=128,
                               queue_size=4096, temperature=0.1, momentum=0.99,
                               shuffle_bn=True)),
        views=WEAK_KEY_VIEWS)


def imagenet():
    # ImageNet-1K/builder.py, a drop-in for facebookresearch/moco: K=65536,
    # m=0.999, T1=0.1, T2=0.05, nn_num=1 (hard-coded), MLP head, shuffled
    # BatchNorm across GPUs (no split). The rest is the MoCo v2 recipe the
    # builder plugs into: batch 256, SGD lr 0.03, wd 1e-4, 200 epochs,
    # cosine, and MoCo's two aug+ views (the published files do not change
    # MoCo's data loader, so the key is not weak here).
    return common.recipe(
        flags=dict(common.IMAGENET_FLAGS, epochs=200, global_batch_size=256, optimizer="sgd",
                   learning_rate=0.03, weight_decay=1e-4, warmup_epochs=0),
        method=_with_ascl(dict(queue_size=65536, temperature=0.1, momentum=0.999,
                               shuffle_bn=True)))


def smoke():
    # Two sub-batches of 4 in the global batch of 8 (one per replica on 2),
    # a 12-row queue the second step wraps, and nn_num=2 so the soft mass is
    # scaled (and may reach the cap of 1). shuffle_bn off: the smoke run
    # checks the targets, not the key shuffle (tests/backbones/test_split_bn.py
    # covers that).
    return common.recipe(
        flags=dict(common.SMOKE_FLAGS, split_batch_norm=2),
        method=_with_ascl(dict(projection_dim=8, queue_size=12, temperature=0.1,
                               momentum=0.9, shuffle_bn=False), nn_num=2),
        views=WEAK_KEY_VIEWS)


RECIPES = dict(cpu_small=cpu_small, cifar10=cifar10, imagenet=imagenet, smoke=smoke)


def get(scale, smoke=False):
    """ASCL's recipe at `scale`, or its test-size one with smoke (see `keras_ssl.configs`)."""
    return common.pick(RECIPES, scale, smoke)
