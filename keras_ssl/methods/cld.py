"""NPID+CLD, MoCo v2+CLD and BYOL+CLD: base methods with the CLD objective.

Wang, Liu, Yu, "Unsupervised Feature Learning by Cross-Level Instance-Group
Discrimination", CVPR 2021; official code frank-xwang/CLD-UnsupervisedLearning.
The objective itself (group head, k-means on the global batch, cross-view loss)
is `keras_ssl.objectives.CLD`; these classes only give it the official
hyper-parameters of each base and flat constructor arguments, so that the
registry names `npid_cld`, `moco_v2_cld`, `byol_cld` take config keys like any
other method. Any method can take the objective directly:
`MoCo(encoder, symmetric=True, objectives=[CLD(feature_dim, num_groups=200)])`.

CLD arguments shared by the three (defaults differ per base):
    num_groups: K, k-means clusters per view.
    cld_temperature: T_cld.
    cld_weight: lambda, the weight of L_CLD next to the base loss.
    group_head: "linear", "normlinear" or "normmlp" (see `objectives.group_head`).
    group_dim: width of the group features (128).
    kmeans_iters: Lloyd iterations (5).
"""

from keras_ssl.methods.byol import BYOL
from keras_ssl.methods.moco import MoCo
from keras_ssl.methods.npid import NPID
from keras_ssl.objectives.cld import CLD


def _with_cld(encoder, kwargs, *, num_groups, cld_temperature, cld_weight, group_head,
              group_dim, kmeans_iters):
    """`kwargs` with a CLD objective (built for the encoder's width) added to its objectives."""
    cld = CLD(int(encoder.output_shape[-1]), num_groups=num_groups,
              temperature=cld_temperature, weight=cld_weight, group_dim=group_dim,
              head=group_head, num_iters=kmeans_iters)
    return {**kwargs, "objectives": [cld, *kwargs.get("objectives", ())]}


class NPIDCLD(NPID):
    """NPID+CLD (`train_cifar_npid_cld.py`, `scripts/cifar/train_cifar10_npid_cld.sh`).

    Defaults are the official CIFAR-10 run: K=128, T_cld=0.2, lambda=1.0,
    Linear group head (as the Linear instance head), two views, the NPID loss
    averaged over them (full softmax over the memory, `--nce-k 0`, t=0.1).
    Other arguments are NPID's.
    """

    def __init__(self, encoder, *, num_examples, num_groups=128, cld_temperature=0.2,
                 cld_weight=1.0, group_head="linear", group_dim=128, kmeans_iters=5,
                 **kwargs):
        super().__init__(encoder, num_examples=num_examples, **_with_cld(
            encoder, kwargs, num_groups=num_groups, cld_temperature=cld_temperature,
            cld_weight=cld_weight, group_head=group_head, group_dim=group_dim,
            kmeans_iters=kmeans_iters))


class MoCoCLD(MoCo):
    """MoCo v2+CLD (`main_imagenet_moco_cld.py`, `train_imagenet_mocov2_cld.sh`).

    Defaults are the official ImageNet run, like MoCo's own defaults: K=120,
    T_cld=0.4, lambda=0.25, "NormMLP" heads (instance head: Dense + ReLU +
    NormLinear; group head likewise), queue 65,536, t=0.2, m=0.999.

    Both views are queries, since CLD needs query-encoder features of two
    views. The official code contrasts both with the key of a third view
    (`shared_key_view=2`, with a 3-view recipe; the presets do this). Without
    it the default is `symmetric=True` (each query against the other view's
    key), which runs on the ordinary 2-view recipe at the cost of a second key
    pass. Other arguments are MoCo's.

    Deviation: the stored ImageNet script (commit 29f2e91) sets
    `clusters=100`; methods-a.md's table (commit 0852e5c3) gives 120, used here.
    """

    def __init__(self, encoder, *, num_groups=120, cld_temperature=0.4, cld_weight=0.25,
                 group_head="normmlp", group_dim=128, kmeans_iters=5, normlinear=True,
                 shared_key_view=None, **kwargs):
        kwargs.setdefault("symmetric", shared_key_view is None)
        super().__init__(encoder, normlinear=normlinear, shared_key_view=shared_key_view,
                         **_with_cld(encoder, kwargs, num_groups=num_groups,
                                     cld_temperature=cld_temperature,
                                     cld_weight=cld_weight, group_head=group_head,
                                     group_dim=group_dim, kmeans_iters=kmeans_iters))


class BYOLCLD(BYOL):
    """BYOL+CLD (the paper reports it; the official repository has no BYOL code).

    The group head sits on the online backbone features of the two views.
    Defaults borrow the MoCo v2+CLD ImageNet values (K=120, T_cld=0.4,
    lambda=0.25, NormMLP group head), as BYOL's own defaults are its ImageNet
    ones; they are not from an official BYOL+CLD script. Other arguments are
    BYOL's.
    """

    def __init__(self, encoder, *, total_steps=None, num_groups=120, cld_temperature=0.4,
                 cld_weight=0.25, group_head="normmlp", group_dim=128, kmeans_iters=5,
                 **kwargs):
        super().__init__(encoder, total_steps=total_steps, **_with_cld(
            encoder, kwargs, num_groups=num_groups, cld_temperature=cld_temperature,
            cld_weight=cld_weight, group_head=group_head, group_dim=group_dim,
            kmeans_iters=kmeans_iters))
