"""MSF: Mean Shift (Koohpayegani, Tejankar, Pirsiavash; ICCV 2021): recipes at every scale.

cmsf.py and cmsf_supervised.py start from these recipes.
"""

from keras_ssl.configs import common

# MSF/CMSF on the CPU protocol: the shared lightly-style SGD flags, BYOL's
# cpu_small heads (1024 -> 256) so MSF against BYOL changes the loss and
# the bank only; the official EMA 0.99 (constant), k=5, weak target /
# strong query views. Bank 4096: 40% of the 10,000 images, as a
# 128,000-1,024,000 bank is 10-80% of ImageNet.
CPU_SMALL_METHOD = dict(projection_hidden_dim=1024, projection_dim=256,
                        prediction_hidden_dim=1024, momentum=0.99, queue_size=4096, topk=5)

# No official MSF/CMSF CIFAR recipe: the official SGD lr 0.05 at batch 256
# with MoCo's CIFAR weight decay 5e-4 and 200 epochs (borrowed), the
# official heads (2x / (1/4) of 512: 1024 -> 128), EMA 0.99, k=5, k'=5;
# bank 16,384, a third of the 50,000 images (borrowed, see cpu_small).
CIFAR10_FLAGS = dict(common.CIFAR10_FLAGS, epochs=200, optimizer="sgd", learning_rate=0.05,
                     weight_decay=5e-4, warmup_epochs=0)

# The official ImageNet schedule, shared by MSF and CMSF (see imagenet()).
IMAGENET_FLAGS = dict(common.IMAGENET_FLAGS, epochs=200, global_batch_size=256,
                      optimizer="sgd", learning_rate=0.05, weight_decay=1e-4, warmup_epochs=0)

# The tests' heads and bank: a 12-row bank, so the second step's 8 targets
# wrap around it.
SMOKE_METHOD = dict(projection_hidden_dim=16, projection_dim=8, prediction_hidden_dim=16,
                    momentum=0.9, queue_size=12, topk=3)


def cpu_small():
    return common.recipe(flags=common.CPU_SMALL_FLAGS, method=CPU_SMALL_METHOD)


def cifar10():
    return common.recipe(flags=CIFAR10_FLAGS,
                         method=dict(momentum=0.99, queue_size=16384, topk=5))


def imagenet():
    # MSF (UMBCvision/MSF run_msf.sh, train_msf.py): SGD 0.05, batch 256,
    # wd 1e-4, cosine, 200 epochs, EMA 0.99, bank 1,024,000, k=5; heads
    # 2048 -> 4096 -> 512. Weak/strong views, the paper's best (72.4% linear
    # with a 1M bank per the CMSF table); run_msf.sh passes 'weak/weak'
    # through a flag train_msf.py does not define.
    return common.recipe(flags=IMAGENET_FLAGS,
                         method=dict(momentum=0.99, queue_size=1024000, topk=5))


def smoke():
    return common.recipe(flags=common.SMOKE_FLAGS, method=SMOKE_METHOD)


RECIPES = dict(cpu_small=cpu_small, cifar10=cifar10, imagenet=imagenet, smoke=smoke)


def get(scale, smoke=False):
    """MSF's recipe at `scale`, or its test-size one with smoke (see `keras_ssl.configs`)."""
    return common.pick(RECIPES, scale, smoke)
