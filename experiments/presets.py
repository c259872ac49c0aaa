"""Presets: runnable documentation of each method's recipe at three scales.

A preset gives values to train.py flags (`flags`), the method's constructor
keyword arguments (`method`), and the view recipe's keyword arguments
(`views`). Flags given on the command line win over the preset.

- `cifar10_cpu_small`: the CPU protocol of shared/reference/published-results.md
  (ResNet-18 CIFAR stem at width 0.25, 1,000 images per class, 32-px views,
  batch 256, 10 epochs, no blur), each method with lightly's CIFAR-10
  benchmark recipe (SGD 0.06 x batch/128, momentum 0.9, weight decay 5e-4,
  cosine), the peer we compare against.
- `cifar10`: full-width ResNet-18 on CIFAR-10, the solo-learn / paper recipes.
- `imagenet`: ResNet-50 at 224 px, the papers' ImageNet recipes.

Run one with
    python experiments/train.py --method=simclr --preset=cifar10_cpu_small \\
        --data=../shared/data/cifar10
"""

_CPU_SMALL_FLAGS = dict(
    backbone="resnet18", width_multiplier=0.25, image_size=32, train_per_class=1000,
    epochs=10, global_batch_size=256, optimizer="sgd", learning_rate=0.12,
    weight_decay=5e-4, warmup_epochs=0, blur=False)

# NPID has no lightly recipe: the CLD repository's NPID CIFAR schedule.
_NPID_CPU_SMALL_FLAGS = dict(_CPU_SMALL_FLAGS, learning_rate=0.06, weight_decay=7e-4,
                             warmup_epochs=5)

_CIFAR_FLAGS = dict(backbone="resnet18", width_multiplier=1.0, image_size=32,
                    train_per_class=0, global_batch_size=256, blur=False)

_IMAGENET_FLAGS = dict(backbone="resnet50", width_multiplier=1.0, image_size=224,
                       train_per_class=0, blur=True)

# CLD's hyper-parameters (K, T_cld, lambda, group head) from its official scripts
# (frank-xwang/CLD-UnsupervisedLearning, scripts/cifar/*, scripts/imagenet/*).
# K=128 is kept on the CPU protocol although it has 10 classes and batch 256:
# it is the official CIFAR-10 value, and K counts local groups, not classes.
_CLD_NPID_CIFAR10 = dict(num_groups=128, cld_temperature=0.2, cld_weight=1.0,
                         group_head="linear")
_CLD_MOCO_CIFAR10 = dict(num_groups=200, cld_temperature=0.2, cld_weight=0.8,
                         group_head="normlinear")
# K = 100: scripts/imagenet/train_imagenet_mocov2_cld.sh sets clusters=100
# (the 70.0% run); methods-a.md's 120 is not what that script passes.
_CLD_MOCO_IMAGENET = dict(num_groups=100, cld_temperature=0.4, cld_weight=0.25,
                          group_head="normmlp")

# MoCo+CLD's CIFAR views (train_cifar10_moco_cld.sh: --three-imgs --aug-plus
# --erasing): three views, each ending in torchvision's RandomErasing(p=1).
# CLD erases after Normalize((0.4914, 0.4822, 0.4465), ...), so its erased
# pixels (0 there) are the CIFAR-10 mean colour; our views are in [0, 1], so
# that colour is the value here. (Our backbones standardise with ImageNet
# statistics, which puts it at 0.03-0.18 std from 0; the colour is what the
# network sees relative to the data, so we keep the colour.) The CIFAR-100
# script has no --erasing; ImageNet's MoCo v2+CLD has none either.
_CLD_MOCO_CIFAR10_VIEWS = dict(num_views=3, erasing_probability=1.0,
                               erasing_value=(0.4914, 0.4822, 0.4465))

PRESETS = {
    "cifar10_cpu_small": {
        # lightly: SimCLRProjectionHead(feature, feature, 128), NTXent t=0.5,
        # SimCLRTransform(cj_strength=0.5, no blur).
        "simclr": dict(flags=_CPU_SMALL_FLAGS,
                       method=dict(projection_dim=128, temperature=0.5),
                       views=dict(jitter_strength=0.5)),
        # lightly: MoCo head without BN, memory bank 4096, t=0.1, momentum 0.99.
        "moco_v2": dict(flags=_CPU_SMALL_FLAGS,
                        method=dict(projection_dim=128, queue_size=4096,
                                    temperature=0.1, momentum=0.99)),
        # No lightly NPID: the CLD repository's NPID CIFAR script (its NPID+CLD
        # script with lambda 0): SGD 0.03 x batch/128, wd 7e-4, 5 warm-up
        # epochs, 128-d, t=0.1, memory momentum 0.5. The warm-up matters at
        # this length: the bank fills with the first epoch's features before
        # the rate is high (29.5% kNN against 27.8% without it, one seed each).
        "npid": dict(flags=_NPID_CPU_SMALL_FLAGS,
                     method=dict(projection_dim=128, temperature=0.1)),
        # lightly: BYOL heads 1024 -> 256, momentum 0.996 -> 1 (cosine).
        "byol": dict(flags=_CPU_SMALL_FLAGS,
                     method=dict(projection_hidden_dim=1024, projection_dim=256,
                                 prediction_hidden_dim=1024, base_momentum=0.996)),
        # SwAV: lightly's CIFAR head (512 hidden, 128-d, 512 prototypes); tau 0.1,
        # eps 0.05, 3 Sinkhorn iterations (paper). Multi-crop 2x32 + 4x16: four
        # 16-px crops cost one 32-px crop, the local/global compute ratio of the
        # paper's 6x96 beside 2x224. Prototypes frozen 1 epoch (39 steps of
        # 10,000 images at batch 256); no queue (batch 256 vs 512 prototypes).
        "swav": dict(flags=_CPU_SMALL_FLAGS,
                     method=dict(projection_hidden_dim=512, projection_dim=128,
                                 num_prototypes=512, freeze_prototypes_steps=39),
                     views=dict(local_size=16, num_local=4, jitter_strength=0.5)),
        # MIRA: the paper's temperatures, beta and teacher schedule; a 512-wide
        # projector and 300 prototypes for batch 256 (methods-b.md); head frozen
        # 1 epoch; the CIFAR views of the official loader (CIFARTransform: two
        # 32-px crops of scale (0.2, 1), solarize on the second, no local crops);
        # the official encoder's zeroed residual branches (build_encoder(...,
        # zero_init_residual=True)), which double the agreement of the two
        # views' targets at the start (measured, see README).
        "mira": dict(flags=dict(_CPU_SMALL_FLAGS, zero_init_residual=True),
                     method=dict(projection_hidden_dim=512, projection_dim=256,
                                 num_prototypes=300, freeze_prototypes_steps=39),
                     views=dict(num_local=0, global_scale=(0.2, 1.0))),
        # CLD on the CPU protocol: each base's entry above plus CLD with the
        # official CIFAR-10 values. MoCo takes CLD's three views (queries from
        # views 0 and 1, one key from view 2) with its random erasing (the
        # protocol still drops the blur); its head stays lightly's MLP.
        # BYOL+CLD has no official script: NPID+CLD's CIFAR-10 values.
        "npid_cld": dict(flags=_NPID_CPU_SMALL_FLAGS,
                         method=dict(projection_dim=128, temperature=0.1,
                                     **_CLD_NPID_CIFAR10)),
        "moco_v2_cld": dict(flags=_CPU_SMALL_FLAGS,
                            method=dict(projection_dim=128, queue_size=4096,
                                        temperature=0.1, momentum=0.99, normlinear=False,
                                        shared_key_view=2, **_CLD_MOCO_CIFAR10),
                            views=_CLD_MOCO_CIFAR10_VIEWS),
        "byol_cld": dict(flags=_CPU_SMALL_FLAGS,
                         method=dict(projection_hidden_dim=1024, projection_dim=256,
                                     prediction_hidden_dim=1024, base_momentum=0.996,
                                     **_CLD_NPID_CIFAR10)),
        # MSF/CMSF on the CPU protocol: the shared lightly-style SGD flags, BYOL's
        # cpu_small heads (1024 -> 256) so MSF against BYOL changes the loss and
        # the bank only; the official EMA 0.99 (constant), k=5, weak target /
        # strong query views. Bank 4096: 40% of the 10,000 images, as a
        # 128,000-1,024,000 bank is 10-80% of ImageNet. CMSF: the 2Q constraint
        # with k'=5 (run_selfsup.sh), its best ImageNet variant.
        "msf": dict(flags=_CPU_SMALL_FLAGS,
                    method=dict(projection_hidden_dim=1024, projection_dim=256,
                                prediction_hidden_dim=1024, momentum=0.99,
                                queue_size=4096, topk=5)),
        "cmsf": dict(flags=_CPU_SMALL_FLAGS,
                     method=dict(projection_hidden_dim=1024, projection_dim=256,
                                 prediction_hidden_dim=1024, momentum=0.99,
                                 queue_size=4096, topk=5, constraint="previous_epoch",
                                 constraint_topk=5)),
        # Supervised CMSF (run_supervised.sh: k=10, m 0.99, weak/strong): the
        # MSF entry's heads and bank; it trains on the class labels.
        "cmsf_supervised": dict(flags=_CPU_SMALL_FLAGS,
                                method=dict(projection_hidden_dim=1024, projection_dim=256,
                                            prediction_hidden_dim=1024, momentum=0.99,
                                            queue_size=4096, topk=10)),
        # InterCLR: moco_v2's CPU entry (queue 4096, t=0.1 for both branches,
        # m=0.99) plus the official inter branch (weights 0.75/0.25, margin -0.5,
        # semi-hard negatives, min cluster 20, centroids every 10 steps). Sizes
        # scaled from ImageNet's N=1.28M: pool 10% of N (128,000) = 1,000,
        # negatives 1.28% of N (16,384) = 128, and K=100: ten clusters per
        # class as ImageNet's 10,000 for 1,000 classes (100 rows per cluster,
        # paper ~128; K <= N / (2 x 20) keeps every cluster >= 20). One
        # intra-only epoch fills the bank before its k-means.
        "interclr": dict(flags=_CPU_SMALL_FLAGS,
                         method=dict(projection_dim=128, queue_size=4096, temperature=0.1,
                                     momentum=0.99, num_clusters=100, num_negatives=128,
                                     negative_pool_size=1000, inter_warmup_epochs=1.0)),
    },
    "cifar10": {
        # solo-learn cifar/simclr.yaml: LARS 0.4, wd 1e-5, proj 2048, t=0.2.
        "simclr": dict(flags=dict(_CIFAR_FLAGS, epochs=1000, optimizer="lars",
                                  learning_rate=0.4, weight_decay=1e-5,
                                  warmup_epochs=10),
                       method=dict(projection_hidden_dim=2048, temperature=0.2),
                       views=dict(jitter_strength=0.5)),
        # CLD/MoCo CIFAR scripts: lr 0.03 x bs/128, wd 5e-4, t=0.1, queue 4096.
        "moco_v2": dict(flags=dict(_CIFAR_FLAGS, epochs=200, optimizer="sgd",
                                   learning_rate=0.06, weight_decay=5e-4,
                                   warmup_epochs=5),
                        method=dict(queue_size=4096, temperature=0.1, momentum=0.99)),
        # CLD's NPID CIFAR script: lr 0.03 x 256/128, wd 7e-4, 5 warm-up
        # epochs, t=0.1, full softmax, 200 epochs.
        "npid": dict(flags=dict(_CIFAR_FLAGS, epochs=200, optimizer="sgd",
                                learning_rate=0.06, weight_decay=7e-4, warmup_epochs=5),
                     method=dict(temperature=0.1)),
        # solo-learn cifar/byol.yaml: LARS 1.0, wd 1e-5, tau 0.99 -> 1.
        "byol": dict(flags=dict(_CIFAR_FLAGS, epochs=1000, optimizer="lars",
                                learning_rate=1.0, weight_decay=1e-5, warmup_epochs=10),
                     method=dict(base_momentum=0.99)),
        # solo-learn cifar/swav.yaml: LARS 0.6, wd 1e-6, 2 crops (no multi-crop,
        # blur p=0.5), 3000 prototypes, queue 3840 from epoch 50 (9,750 steps of
        # 195), prototypes frozen 2 epochs (390 steps).
        "swav": dict(flags=dict(_CIFAR_FLAGS, epochs=1000, optimizer="lars",
                                learning_rate=0.6, weight_decay=1e-6, warmup_epochs=10,
                                blur=True),
                     method=dict(projection_hidden_dim=2048, freeze_prototypes_steps=390,
                                 queue_length=3840, queue_start_steps=9750),
                     views=dict(num_local=0, global_scale=(0.08, 1.0))),
        # No CIFAR schedule from the MIRA authors: their lr rule (LARS 0.3 x
        # bs/256, wd 1e-6, 10 warm-up epochs) for solo-learn's 1000 epochs, the
        # paper's head and schedules, head frozen 1 epoch, and the CIFAR views
        # of their loader (src/loader.py CIFARTransform: two 32-px crops of
        # scale (0.2, 1), solarize on the second, no blur, no local crops).
        "mira": dict(flags=dict(_CIFAR_FLAGS, epochs=1000, optimizer="lars",
                                zero_init_residual=True,
                                learning_rate=0.3, weight_decay=1e-6, warmup_epochs=10),
                     method=dict(freeze_prototypes_steps=195),
                     views=dict(num_local=0, global_scale=(0.2, 1.0))),
        # NPID+CLD train_cifar10_npid_cld.sh: batch 256, lr 0.03 x 256/128, wd 7e-4,
        # 5 warm-up epochs, cosine, 200 epochs, t=0.1, full softmax, fp16.
        "npid_cld": dict(flags=dict(_CIFAR_FLAGS, epochs=200, optimizer="sgd",
                                    learning_rate=0.06, weight_decay=7e-4,
                                    warmup_epochs=5),
                         method=dict(temperature=0.1, **_CLD_NPID_CIFAR10)),
        # MoCo+CLD train_cifar10_moco_cld.sh: batch 256, lr 0.06, wd 8e-4, 5 warm-up
        # epochs, queue 12288, t=0.07, m=0.999, NormLinear heads (no hidden
        # layer), three views with aug-plus (blur p=0.5) and RandomErasing
        # p=1 (`--erasing`).
        "moco_v2_cld": dict(flags=dict(_CIFAR_FLAGS, epochs=200, optimizer="sgd",
                                       learning_rate=0.06, weight_decay=8e-4,
                                       warmup_epochs=5, blur=True),
                            method=dict(projection_hidden_dim=0, normlinear=True,
                                        queue_size=12288, temperature=0.07,
                                        momentum=0.999, shared_key_view=2,
                                        **_CLD_MOCO_CIFAR10),
                            views=_CLD_MOCO_CIFAR10_VIEWS),
        # BYOL+CLD: solo-learn's CIFAR BYOL plus NPID+CLD's CIFAR-10 values (no
        # official BYOL+CLD script).
        "byol_cld": dict(flags=dict(_CIFAR_FLAGS, epochs=1000, optimizer="lars",
                                    learning_rate=1.0, weight_decay=1e-5, warmup_epochs=10),
                         method=dict(base_momentum=0.99, **_CLD_NPID_CIFAR10)),
        # No official MSF/CMSF CIFAR recipe: the official SGD lr 0.05 at batch 256
        # with MoCo's CIFAR weight decay 5e-4 and 200 epochs (borrowed), the
        # official heads (2x / (1/4) of 512: 1024 -> 128), EMA 0.99, k=5, k'=5;
        # bank 16,384, a third of the 50,000 images (borrowed, see cpu_small).
        "msf": dict(flags=dict(_CIFAR_FLAGS, epochs=200, optimizer="sgd",
                               learning_rate=0.05, weight_decay=5e-4, warmup_epochs=0),
                    method=dict(momentum=0.99, queue_size=16384, topk=5)),
        "cmsf": dict(flags=dict(_CIFAR_FLAGS, epochs=200, optimizer="sgd",
                                learning_rate=0.05, weight_decay=5e-4, warmup_epochs=0),
                     method=dict(momentum=0.99, queue_size=16384, topk=5,
                                 constraint="previous_epoch", constraint_topk=5)),
        "cmsf_supervised": dict(flags=dict(_CIFAR_FLAGS, epochs=200, optimizer="sgd",
                                           learning_rate=0.05, weight_decay=5e-4,
                                           warmup_epochs=0),
                                method=dict(momentum=0.99, queue_size=16384, topk=10)),
        # InterCLR has no CIFAR config: moco_v2's CIFAR entry above plus the
        # official inter branch, sizes scaled as the CPU entry for N=50,000
        # (pool 5,000, negatives 640, K=100).
        "interclr": dict(flags=dict(_CIFAR_FLAGS, epochs=200, optimizer="sgd",
                                    learning_rate=0.06, weight_decay=5e-4,
                                    warmup_epochs=5),
                         method=dict(queue_size=4096, temperature=0.1, momentum=0.99,
                                     num_clusters=100, num_negatives=640,
                                     negative_pool_size=5000, inter_warmup_epochs=1.0)),
    },
    "imagenet": {
        # SimCLR: LARS 0.3 x bs/256 (4.8 at 4096), wd 1e-6, t=0.1, 10 warm-up epochs.
        "simclr": dict(flags=dict(_IMAGENET_FLAGS, epochs=100, global_batch_size=4096,
                                  optimizer="lars", learning_rate=4.8,
                                  weight_decay=1e-6, warmup_epochs=10),
                       method=dict(temperature=0.1)),
        # MoCo v2: SGD 0.03 x bs/256, wd 1e-4, t=0.2, queue 65536, m=0.999, cosine.
        "moco_v2": dict(flags=dict(_IMAGENET_FLAGS, epochs=200, global_batch_size=256,
                                   optimizer="sgd", learning_rate=0.03,
                                   weight_decay=1e-4, warmup_epochs=0),
                        method=dict(queue_size=65536, temperature=0.2, momentum=0.999)),
        # NPID: SGD 0.03, wd 5e-4, t=0.07, 200 epochs (full softmax here; see NPID).
        "npid": dict(flags=dict(_IMAGENET_FLAGS, epochs=200, global_batch_size=256,
                                optimizer="sgd", learning_rate=0.03,
                                weight_decay=5e-4, warmup_epochs=0),
                     method=dict(temperature=0.07)),
        # BYOL 300-epoch preset: LARS 0.3 x bs/256, wd 1e-6, tau 0.99.
        "byol": dict(flags=dict(_IMAGENET_FLAGS, epochs=300, global_batch_size=4096,
                                optimizer="lars", learning_rate=4.8,
                                weight_decay=1e-6, warmup_epochs=10),
                     method=dict(base_momentum=0.99)),
        # SwAV 800 epochs, batch 4096: LARS 4.8, wd 1e-6, 10 warm-up epochs,
        # 2x224 + 6x96, prototypes frozen 313 steps, no queue (75.3% linear).
        "swav": dict(flags=dict(_IMAGENET_FLAGS, epochs=800, global_batch_size=4096,
                                optimizer="lars", learning_rate=4.8,
                                weight_decay=1e-6, warmup_epochs=10),
                     method=dict(freeze_prototypes_steps=313)),
        # MIRA 400 epochs, batch 4096: LARS 0.3 x 16, wd 1e-6, 10 warm-up epochs,
        # 2x224 + 6x96, head frozen 1 epoch (312 steps), zero-init residual
        # (75.6% linear).
        "mira": dict(flags=dict(_IMAGENET_FLAGS, epochs=400, global_batch_size=4096,
                                zero_init_residual=True,
                                optimizer="lars", learning_rate=4.8,
                                weight_decay=1e-6, warmup_epochs=10),
                     method=dict(freeze_prototypes_steps=312)),
        # MoCo v2+CLD train_imagenet_mocov2_cld.sh: batch 512, SGD 0.2, wd 1e-4,
        # cosine, 200 epochs, queue 65536, t=0.2, m=0.999, --mlp --normlinear
        # (NormMLP heads), three views with aug-plus, fp16 (70.0% linear).
        "moco_v2_cld": dict(flags=dict(_IMAGENET_FLAGS, epochs=200, global_batch_size=512,
                                       optimizer="sgd", learning_rate=0.2,
                                       weight_decay=1e-4, warmup_epochs=0),
                            method=dict(queue_size=65536, temperature=0.2, momentum=0.999,
                                        normlinear=True, shared_key_view=2,
                                        **_CLD_MOCO_IMAGENET),
                            views=dict(num_views=3)),
        # No official ImageNet NPID+CLD or BYOL+CLD script: each base's entry
        # above plus MoCo v2+CLD's ImageNet K, T_cld and lambda (NPID keeps a
        # Linear group head like its Linear instance head).
        "npid_cld": dict(flags=dict(_IMAGENET_FLAGS, epochs=200, global_batch_size=256,
                                    optimizer="sgd", learning_rate=0.03,
                                    weight_decay=5e-4, warmup_epochs=0),
                         method=dict(temperature=0.07,
                                     **dict(_CLD_MOCO_IMAGENET, group_head="linear"))),
        "byol_cld": dict(flags=dict(_IMAGENET_FLAGS, epochs=300, global_batch_size=4096,
                                    optimizer="lars", learning_rate=4.8,
                                    weight_decay=1e-6, warmup_epochs=10),
                         method=dict(base_momentum=0.99, **_CLD_MOCO_IMAGENET)),
        # MSF (UMBCvision/MSF run_msf.sh, train_msf.py): SGD 0.05, batch 256,
        # wd 1e-4, cosine, 200 epochs, EMA 0.99, bank 1,024,000, k=5; heads
        # 2048 -> 4096 -> 512. Weak/strong views, the paper's best (72.4% linear
        # with a 1M bank per the CMSF table); run_msf.sh passes 'weak/weak'
        # through a flag train_msf.py does not define.
        "msf": dict(flags=dict(_IMAGENET_FLAGS, epochs=200, global_batch_size=256,
                               optimizer="sgd", learning_rate=0.05, weight_decay=1e-4,
                               warmup_epochs=0),
                    method=dict(momentum=0.99, queue_size=1024000, topk=5)),
        # CMSF-2Q (UCDvision/CMSF run_selfsup.sh): as MSF with bank 128,000,
        # k=5, k'=5, weak/strong (73.0% linear).
        "cmsf": dict(flags=dict(_IMAGENET_FLAGS, epochs=200, global_batch_size=256,
                                optimizer="sgd", learning_rate=0.05, weight_decay=1e-4,
                                warmup_epochs=0),
                     method=dict(momentum=0.99, queue_size=128000, topk=5,
                                 constraint="previous_epoch", constraint_topk=5)),
        # Supervised CMSF (run_supervised.sh): the same with k=10 and labels.
        "cmsf_supervised": dict(flags=dict(_IMAGENET_FLAGS, epochs=200, global_batch_size=256,
                                           optimizer="sgd", learning_rate=0.05,
                                           weight_decay=1e-4, warmup_epochs=0),
                                method=dict(momentum=0.99, queue_size=128000, topk=10)),
        # InterCLR, mmselfsup 0.x configs/selfsup/interclr/ (interclr-moco.py,
        # sgd_coslr-200e_in1k): batch 256, SGD 0.03, wd 1e-4, cosine, 200
        # epochs, MoCo v2 aug, 2048-2048-128 head, queue 65536, t=0.2,
        # m=0.999, K=10,000, min cluster 20, 16,384 semi-hard negatives from
        # the top 128,000, margin -0.5, weights 0.75/0.25 (68.0% linear).
        # Deviation: one intra-only epoch fills the bank instead of clustering
        # the untrained network's features before training.
        "interclr": dict(flags=dict(_IMAGENET_FLAGS, epochs=200, global_batch_size=256,
                                    optimizer="sgd", learning_rate=0.03,
                                    weight_decay=1e-4, warmup_epochs=0),
                         method=dict(queue_size=65536, temperature=0.2, momentum=0.999,
                                     num_clusters=10000, min_cluster_size=20,
                                     num_negatives=16384, negative_pool_size=128000,
                                     inter_cos_margin=-0.5, intra_loss_weight=0.75,
                                     inter_loss_weight=0.25, inter_warmup_epochs=1.0)),
    },
}


def get(preset, method):
    """The preset entry for `method`, or a ValueError naming valid choices."""
    if preset not in PRESETS:
        raise ValueError(f"--preset={preset!r} is not one of {', '.join(sorted(PRESETS))}.")
    if method not in PRESETS[preset]:
        raise ValueError(f"--preset={preset} has no entry for --method={method}; "
                         f"it covers {', '.join(sorted(PRESETS[preset]))}.")
    entry = PRESETS[preset][method]
    return dict(flags=dict(entry.get("flags", {})), method=dict(entry.get("method", {})),
                views=dict(entry.get("views", {})))
