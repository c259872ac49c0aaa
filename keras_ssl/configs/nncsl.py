"""NNCSL (Kang et al., ICCV 2023): recipes at every scale.

The official recipes (kangzhiq/NNCSL @0d4dbf7d, configs/nncsl/*/*_nncsl.yaml):
ResNet-18 with the CIFAR stem, a 512-512-128 projector, tau 0.1, T 0.25,
label smoothing 0.1, loss 1 PAWS + 1 ME-max + 0.005 online CE + 0.2 NND,
PAWS-style LARS over SGD (momentum 0.9, wd 1e-5), a warm-up + cosine schedule
that restarts at every task. CIFAR-10: 5 tasks of 2 classes, 250 epochs each,
lr 0.08 -> 0.4 -> 0.032 over 10 warm-up epochs; 5 labelled images per seen
class in every step (2 views each), 256 unlabelled images of the current task
(2 x 32 px + 2 x 18 px), a 500-image buffer. `flags.epochs` is per task.

What the continual driver takes beside the flags is `continual(scale)`:
tasks, the buffer's size, labelled images per seen class per step, schedule.

Deviations at every scale: the library's LARS divides by ||g + wd w|| where
PAWS's divides by ||g|| + wd ||w||, and has one learning rate (the official
classifier group has lr 0.12 and no weight decay); the views are the
multi-crop recipe's colour distortion, not the official CIFAR recipe's
solarize and equalize.
"""

from keras_ssl.configs import common

# Per scale, the arguments of `keras_ssl.training.continual_pretrain` beside the
# flags: T tasks, the replay buffer's size, labelled images per seen class per
# step, and the per-task schedule's warm-up start and final lr as fractions
# of the flag's (C10: 0.08 and 0.032 of 0.4; IN-100: 0.3 and 0.064 of 1.2).
_C10_SCHEDULE = dict(start_lr_fraction=0.2, final_lr_fraction=0.08)
CONTINUAL = dict(
    # 2 epochs a task: the official 10 warm-up epochs of 250 become 20% of each task.
    cpu_small=dict(tasks=5, buffer_size=500, supports_per_class=5, warmup_fraction=0.2,
                   **_C10_SCHEDULE),
    cifar10=dict(tasks=5, buffer_size=500, supports_per_class=5, **_C10_SCHEDULE),
    imagenet=dict(tasks=20, buffer_size=500, supports_per_class=3, start_lr_fraction=0.25,
                  final_lr_fraction=0.064 / 1.2),
    smoke=dict(tasks=2, buffer_size=4, supports_per_class=1, **_C10_SCHEDULE),
)

# nncsl_train.py: 2 x 32 px (0.75, 1) and 2 x 18 px (0.3, 0.75) crops.
CIFAR_VIEWS = dict(global_size=32, local_size=18, num_global=2, num_local=2,
                   global_scale=(0.75, 1.0), local_scale=(0.3, 0.75))


def cpu_small():
    # methods-c.md's smallest faithful recipe: R18/4 (128-d feature), a
    # 128-128-128 projector, 5% labels, 2 epochs a task with the warm-up in
    # the first 20% of each; frozen BatchNorm off (run both ways to compare).
    return common.recipe(
        flags=dict(common.CPU_SMALL_FLAGS, epochs=2, optimizer="lars", learning_rate=0.4,
                   weight_decay=1e-5, warmup_epochs=0, label_fraction=0.05, hide_labels=True,
                   blur=False),
        method=dict(num_classes=10, projection_hidden_dim=128, projection_dim=128),
        views=CIFAR_VIEWS)


def cifar10():
    # configs/nncsl/cifar10/*_nncsl.yaml, with the official code's BatchNorm
    # in inference mode from task 2 (what produced the released logs:
    # 72.71 / 77.32 / 77.31 at 0.8 / 5 / 25% labels).
    return common.recipe(
        flags=dict(common.CIFAR10_FLAGS, epochs=250, optimizer="lars", learning_rate=0.4,
                   weight_decay=1e-5, warmup_epochs=10, label_fraction=0.05, hide_labels=True,
                   blur=False),
        method=dict(num_classes=10, projection_hidden_dim=512, projection_dim=128,
                    freeze_batch_norm_after_first_task=True),
        views=CIFAR_VIEWS)


def imagenet():
    # The ImageNet-100 config (100 classes): ResNet-18 at 224 px, 20 tasks x
    # 100 epochs, lr 0.3 -> 1.2 -> 0.064, 1% labels, 64 unlabelled images and
    # 3 labelled images per seen class a step. The official loader of this
    # config crashes as released (issue #6), so its numbers are unverified.
    return common.recipe(
        flags=dict(common.IMAGENET_FLAGS, backbone="resnet18", epochs=100,
                   global_batch_size=64, optimizer="lars", learning_rate=1.2,
                   weight_decay=1e-5, warmup_epochs=10, label_fraction=0.01, hide_labels=True,
                   blur=True),
        method=dict(num_classes=100, projection_hidden_dim=512, projection_dim=128,
                    freeze_batch_norm_after_first_task=True),
        views=dict(num_global=2, num_local=2))


def smoke():
    # Tiny heads; the harness' 3 classes, all current; frozen BN on, so a
    # driver test that runs a second task goes through both modes. The
    # projector's BatchNorm is synchronised, as the harness' backbone is, so
    # 1 and 2 replicas compute the same step (the official code does not
    # synchronise: DistributedDataParallel without SyncBatchNorm,
    # nncsl_train.py:273-274).
    return common.recipe(flags=common.SMOKE_FLAGS,
                         method=dict(num_classes=3, projection_hidden_dim=8, projection_dim=8,
                                     freeze_batch_norm_after_first_task=True,
                                     synchronized_bn=True),
                         views=dict(local_size=8, num_local=1))


RECIPES = dict(cpu_small=cpu_small, cifar10=cifar10, imagenet=imagenet, smoke=smoke)


def get(scale, smoke=False):
    """NNCSL's recipe at `scale`, or its test-size one with smoke (see `keras_ssl.configs`)."""
    return common.pick(RECIPES, scale, smoke)


def continual(scale, smoke=False):
    """`continual_pretrain`'s arguments at `scale` beside the flags (tasks, buffer, schedule)."""
    return dict(CONTINUAL["smoke" if smoke else common.scale_of(scale)])
