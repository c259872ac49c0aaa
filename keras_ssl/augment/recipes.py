"""The view recipes of the papers, as factories with every number a keyword.

Each factory returns a `ViewRecipe`. The defaults are the paper's; every factory
takes ``blur``, and ``blur=False`` drops the Gaussian blur, as the CIFAR
protocols of SimCLR and BYOL (solo-learn) do at 32 px. Pick one by name with `get_recipe`:

>>> get_recipe("byol", image_size=32, blur=False).num_views
2
"""

import dataclasses

from keras_ssl.augment.multi_resolution import MultiResolutionRecipe
from keras_ssl.augment.randaugment import WeakStrongRecipe
from keras_ssl.augment.views import ViewConfig
from keras_ssl.augment.views import ViewRecipe

__all__ = [
    "MultiResolutionRecipe",
    "RECIPES",
    "ViewConfig",
    "ViewRecipe",
    "WeakStrongRecipe",
    "byol_views",
    "fixmatch_views",
    "get_recipe",
    "hiermatch_views",
    "mira_views",
    "mixmatch_views",
    "moco_v2_views",
    "msf_views",
    "multi_crop_views",
    "multi_resolution_views",
    "npid_views",
    "simclr_views",
]


def simclr_views(
    image_size,
    *,
    jitter_strength=1.0,
    blur=True,
    crop_scale=(0.08, 1.0),
    flip_probability=0.5,
    jitter_probability=0.8,
    grayscale_probability=0.2,
    blur_probability=0.5,
    blur_sigma=(0.1, 2.0),
    num_views=2,
):
    """SimCLR: two views with crop, flip, colour distortion of strength s, blur.

    Colour jitter is ``(0.8 s, 0.8 s, 0.8 s, 0.2 s)``; the paper uses s=1.0 on
    ImageNet and s=0.5 without blur on CIFAR-10.

    Reference: Chen et al., "A Simple Framework for Contrastive Learning of Visual
    Representations" (ICML 2020), appendix A and B.9.
    """
    s = jitter_strength
    view = ViewConfig(
        size=image_size,
        crop_scale=crop_scale,
        flip_probability=flip_probability,
        jitter=(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s),
        jitter_probability=jitter_probability,
        grayscale_probability=grayscale_probability,
        blur_probability=blur_probability if blur else 0.0,
        blur_sigma=blur_sigma,
    )
    return ViewRecipe((view,) * num_views)


def moco_v2_views(
    image_size,
    *,
    blur=True,
    crop_scale=(0.2, 1.0),
    flip_probability=0.5,
    jitter=(0.4, 0.4, 0.4, 0.1),
    jitter_probability=0.8,
    grayscale_probability=0.2,
    blur_probability=0.5,
    blur_sigma=(0.1, 2.0),
    num_views=2,
    erasing_probability=0.0,
    erasing_value=0.0,
    weak_key=False,
):
    """MoCo v2 ("aug+"): crop (0.2, 1), jitter 0.4/0.4/0.4/0.1, gray, blur, flip.

    ``weak_key=True`` makes view 1 (MoCo's key) *weak*: the same crop and
    flip settings with no colour op, blur or erasing; the other views stay
    strong. ASCL's CIFAR code does this (`TwoCrop(weak, strong)` returns
    (strong, weak): the query sees the strong view, the key the weak one;
    MrChenFeng/ASCL_ICPR2022 `dataloader.py`); MSF's pair is the same
    (`msf_views`).

    ``erasing_probability`` appends torchvision's `RandomErasing` (default
    area 0.02-0.33, height/width 0.3-3.3) to every view, after the colour ops;
    CLD's MoCo CIFAR recipe (``--aug-plus --erasing``) uses p=1 with the
    erased pixels at the CIFAR-10 normalisation mean, which is 0 after its
    ``Normalize``: ``erasing_value=(0.4914, 0.4822, 0.4465)`` here, where
    views are in ``[0, 1]``. Off by default, as in MoCo v2.

    Reference: Chen et al., "Improved Baselines with Momentum Contrastive
    Learning" (arXiv 2003.04297); facebookresearch/moco `main_moco.py --aug-plus`;
    for erasing, Wang et al., CLD (CVPR 2021), frank-xwang/CLD-UnsupervisedLearning
    `datasets/dataloader.py`.
    """
    view = ViewConfig(
        size=image_size,
        crop_scale=crop_scale,
        flip_probability=flip_probability,
        jitter=jitter,
        jitter_probability=jitter_probability,
        grayscale_probability=grayscale_probability,
        blur_probability=blur_probability if blur else 0.0,
        blur_sigma=blur_sigma,
        erasing_probability=erasing_probability,
        erasing_value=erasing_value,
    )
    views = [view] * num_views
    if weak_key:
        if num_views < 2:
            raise ValueError(f"weak_key makes view 1 weak; num_views={num_views} has none.")
        views[1] = _weak_view(image_size, crop_scale, flip_probability)
    return ViewRecipe(tuple(views))


def _weak_view(image_size, crop_scale, flip_probability):
    """A random resized crop and a flip, nothing else (the weak view of MSF and ASCL)."""
    return ViewConfig(size=image_size, crop_scale=crop_scale,
                      flip_probability=flip_probability, jitter_probability=0.0)


def npid_views(
    image_size,
    *,
    crop_scale=(0.2, 1.0),
    flip_probability=0.5,
    jitter=(0.4, 0.4, 0.4, 0.4),
    jitter_probability=1.0,
    grayscale_probability=0.2,
    num_views=2,
    blur=True,
):
    """NPID / CLD on CIFAR: crop (0.2, 1), jitter 0.4 always applied, gray, flip.

    The CLD code (`datasets/dataloader.py` of frank-xwang/CLD-UnsupervisedLearning,
    without ``--aug-plus``) uses ``RandomResizedCrop(32, scale=(0.2, 1.))``,
    ``ColorJitter(0.4, 0.4, 0.4, 0.4)`` with no `RandomApply`,
    ``RandomGrayscale(p=0.2)`` and a flip, and no blur. Two views: CLD's grouping
    branch compares them; NPID's loss averages over them. ``blur`` is accepted
    so that every factory takes the same switch; this recipe has no blur, so it
    changes nothing.

    Reference: Wu et al., "Unsupervised Feature Learning via Non-Parametric
    Instance Discrimination" (CVPR 2018); Wang et al., "Unsupervised Feature
    Learning by Cross-Level Instance-Group Discrimination" (CVPR 2021).
    """
    del blur  # No blur in the paper's recipe to switch off.
    view = ViewConfig(
        size=image_size,
        crop_scale=crop_scale,
        flip_probability=flip_probability,
        jitter=jitter,
        jitter_probability=jitter_probability,
        grayscale_probability=grayscale_probability,
    )
    return ViewRecipe((view,) * num_views)


def byol_views(
    image_size,
    *,
    blur=True,
    crop_scale=(0.08, 1.0),
    flip_probability=0.5,
    jitter=(0.4, 0.4, 0.2, 0.1),
    jitter_probability=0.8,
    grayscale_probability=0.2,
    blur_probabilities=(1.0, 0.1),
    blur_sigma=(0.1, 2.0),
    solarize_probabilities=(0.0, 0.2),
):
    """BYOL's asymmetric pair: view 1 always blurred, view 2 sometimes solarized.

    Reference: Grill et al., "Bootstrap your own latent" (NeurIPS 2020), table 6;
    google-deepmind/deepmind-research `byol/utils/augmentations.py`.
    """
    views = tuple(
        ViewConfig(
            size=image_size,
            crop_scale=crop_scale,
            flip_probability=flip_probability,
            jitter=jitter,
            jitter_probability=jitter_probability,
            grayscale_probability=grayscale_probability,
            blur_probability=blur_probability if blur else 0.0,
            blur_sigma=blur_sigma,
            solarize_probability=solarize_probability,
        )
        for blur_probability, solarize_probability in zip(
            blur_probabilities, solarize_probabilities
        )
    )
    return ViewRecipe(views)


def multi_crop_views(
    global_size=224,
    local_size=96,
    *,
    num_global=2,
    num_local=6,
    global_scale=(0.14, 1.0),
    local_scale=(0.05, 0.14),
    base=None,
    jitter_strength=1.0,
    blur=True,
):
    """Multi-crop: ``num_global`` large crops then ``num_local`` small ones.

    Every crop gets the colour settings of ``base``; the crop size and scale are
    replaced. The default base is SwAV's: flip, colour distortion of strength s
    (jitter ``(0.8 s, 0.8 s, 0.8 s, 0.2 s)``, p=0.8; gray p=0.2) and blur p=0.5.
    Global crops come first, as SwAV's loss expects (it assigns codes to crops
    0 and 1).

    Reference: Caron et al., "Unsupervised Learning of Visual Features by
    Contrasting Cluster Assignments" (NeurIPS 2020); facebookresearch/swav
    `src/multicropdataset.py`.

    Args:
        global_size, local_size: output sides in pixels.
        num_global, num_local: number of crops of each kind.
        global_scale, local_scale: area fractions of the random resized crops.
        base: a `ViewConfig` whose colour settings all crops share; default SwAV's.
        jitter_strength: s for the default base.
        blur: False drops the blur from every crop.
    """
    if base is None:
        s = jitter_strength
        base = ViewConfig(
            size=global_size,
            jitter=(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s),
            jitter_probability=0.8,
            grayscale_probability=0.2,
            blur_probability=0.5,
        )
    if not blur:
        base = dataclasses.replace(base, blur_probability=0.0)
    global_view = dataclasses.replace(base, size=global_size, crop_scale=global_scale)
    local_view = dataclasses.replace(base, size=local_size, crop_scale=local_scale)
    return ViewRecipe((global_view,) * num_global + (local_view,) * num_local)


def mira_views(
    global_size=224,
    local_size=96,
    *,
    num_local=6,
    global_scale=(0.14, 1.0),
    local_scale=(0.05, 0.14),
    jitter=(0.4, 0.4, 0.2, 0.1),
    blur=True,
):
    """MIRA's crops: two asymmetric global crops (BYOL's colour ops), then local ones.

    Every crop: random resized crop, colour jitter ``jitter`` with p=0.8,
    grayscale p=0.2, flip. Global crop 1 is always blurred; global crop 2 is
    blurred with p=0.1 and solarized with p=0.2; local crops are blurred with
    p=0.5. With ``num_local=0, global_scale=(0.2, 1.0), blur=False`` this is
    MIRA's CIFAR transform (two 32-px crops, solarize on the second).

    Reference: Lee et al., "Unsupervised Visual Representation Learning via
    Mutual Information Regularized Assignment" (NeurIPS 2022); movinghoon/mira
    `src/loader.py` (`DINOTransform` for ImageNet, `CIFARTransform`).
    Deviation: crops are resized bilinearly; the official ImageNet crops use
    bicubic interpolation (its CIFAR crops use the bilinear default).
    """
    def crop(size, scale, blur_probability, solarize_probability=0.0):
        return ViewConfig(size=size, crop_scale=scale, jitter=jitter,
                          jitter_probability=0.8, grayscale_probability=0.2,
                          blur_probability=blur_probability if blur else 0.0,
                          solarize_probability=solarize_probability)

    global_crops = (crop(global_size, global_scale, 1.0),
                    crop(global_size, global_scale, 0.1, solarize_probability=0.2))
    local_crops = (crop(local_size, local_scale, 0.5),) * num_local
    return ViewRecipe(global_crops + local_crops)


def msf_views(
    image_size,
    *,
    weak_strong=True,
    blur=True,
    crop_scale=(0.2, 1.0),
    flip_probability=0.5,
):
    """MSF: view 0 (online query) strong, view 1 (EMA target) weak.

    The strong view is MoCo v2's ("aug+"); the weak view is the same crop and
    flip with no photometric op. ``weak_strong=False`` makes both views strong
    (MSF's default without ``--weak_strong``); the paper's best ImageNet result
    (72.4% linear) is weak/strong.

    Reference: Koohpayegani, Tejankar, Pirsiavash, "Mean Shift for
    Self-Supervised Learning" (ICCV 2021); UMBCvision/MSF `train_msf.py`
    (`get_train_loader`, `TwoCropsTransform` returns [strong, weak]).
    """
    strong = moco_v2_views(image_size, blur=blur, crop_scale=crop_scale,
                           flip_probability=flip_probability).views[0]
    weak = _weak_view(image_size, crop_scale, flip_probability)
    return ViewRecipe((strong, weak if weak_strong else strong))


def multi_resolution_views(image_size, *, resolutions=(24,), base="moco_v2", source_view=0,
                           blur=True, **base_kwargs):
    """Recipe `base` at `image_size`, plus view `source_view` resized to each of `resolutions`.

    The CPU protocol's reading of CLIM's multi-resolution augmentation
    (shared/reference/methods-c.md section 7: "the same crop box resized to
    32 and 24 px"): MoCo v2's pair at 32 px and the query again at 24 px.
    The paper's sides are unverified (methods-a.md section 7 recalls
    224/192/160/128/96 on ImageNet). See `MultiResolutionRecipe`.

    Args:
        image_size: side of the base views.
        resolutions: sides of the extra copies.
        base: the registry name of the base recipe (`RECIPES`).
        source_view: the base view that is copied (0: MoCo's query).
        blur: passed to the base recipe.
        **base_kwargs: other keyword arguments of the base recipe.

    >>> multi_resolution_views(32, resolutions=(24,), blur=False).sizes
    (32, 32, 24)
    """
    return MultiResolutionRecipe(
        get_recipe(base, image_size=image_size, blur=blur, **base_kwargs),
        resolutions=tuple(resolutions), source_view=source_view)


def fixmatch_views(image_size, *, blur=False, **randaugment):
    """FixMatch: a weak view (flip, shift) and a strong one (weak, RandAugment, Cutout).

    ``blur`` is ignored (the official pipeline has none); ``randaugment`` are
    `WeakStrongRecipe`'s keywords (`keras_ssl.augment.randaugment`).

    >>> fixmatch_views(32).num_views
    2
    """
    del blur
    return WeakStrongRecipe(image_size=image_size, num_weak=1, num_strong=1, **randaugment)


def mixmatch_views(image_size, *, blur=False, num_augmentations=2, shift_fraction=0.125):
    """MixMatch: K weak views (flip, reflect-padded shift), K = 2; ``blur`` is ignored.

    >>> mixmatch_views(32).num_views
    2
    """
    del blur
    return WeakStrongRecipe(image_size=image_size, num_weak=num_augmentations, num_strong=0,
                            shift_fraction=shift_fraction)


def hiermatch_views(image_size, *, blur=False, num_weak=2, num_strong=1, **randaugment):
    """HierMatch: two weak views and a strong one, so either base finds its views.

    MixMatch takes the weak views, FixMatch the first and the last; a config
    may drop the other base's (``num_strong=0`` or ``num_weak=1``).

    >>> hiermatch_views(32).num_views
    3
    """
    del blur
    return WeakStrongRecipe(image_size=image_size, num_weak=num_weak, num_strong=num_strong,
                            **randaugment)


RECIPES = {
    "simclr": simclr_views,
    "moco_v2": moco_v2_views,
    "npid": npid_views,
    "byol": byol_views,
    "multi_crop": multi_crop_views,
    "mira": mira_views,
    "msf": msf_views,
    "multi_resolution": multi_resolution_views,
    "fixmatch": fixmatch_views,
    "mixmatch": mixmatch_views,
    "hiermatch": hiermatch_views,
}


def get_recipe(name, **kwargs):
    """Builds the recipe registered under ``name`` with the factory's keywords."""
    if name not in RECIPES:
        raise ValueError(f"Unknown view recipe {name!r}; known: {sorted(RECIPES)}.")
    return RECIPES[name](**kwargs)
