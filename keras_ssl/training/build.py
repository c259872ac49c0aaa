"""The pieces of a run built from names: backbone, views, optimizer and the compiled method."""

import inspect

import keras

from keras_ssl import augment, backbones, methods
from keras_ssl.optimizers import LARS, SGD, FixMatchCosine, WarmupCosine

OPTIMIZERS = ("sgd", "lars", "adamw")
# warmup_cosine: linear warm-up, then cosine to 0 (WarmupCosine);
# fixmatch_cosine: FixMatch's cos(7 pi k / 16 K), no warm-up (FixMatchCosine).
LR_SCHEDULES = ("warmup_cosine", "fixmatch_cosine")


def make_optimizer(name, *, learning_rate, weight_decay, total_steps, warmup_steps,
                   lr_schedule="warmup_cosine", nesterov=False):
    """`name` (one of `OPTIMIZERS`) on the schedule `lr_schedule` (one of `LR_SCHEDULES`).

    `nesterov` is SGD's Nesterov momentum; other optimizers refuse it.
    """
    if lr_schedule == "warmup_cosine":
        schedule = WarmupCosine(learning_rate, total_steps=total_steps,
                                warmup_steps=warmup_steps)
    elif lr_schedule == "fixmatch_cosine":
        if warmup_steps:
            raise ValueError("--lr_schedule=fixmatch_cosine has no warm-up; set "
                             "--warmup_epochs=0.")
        schedule = FixMatchCosine(learning_rate, total_steps=total_steps)
    else:
        raise ValueError(f"--lr_schedule={lr_schedule!r} is not one of "
                         f"{', '.join(LR_SCHEDULES)}.")
    if nesterov and name != "sgd":
        raise ValueError(f"--nesterov is SGD's momentum; --optimizer={name} has none.")
    if name == "sgd":
        return SGD(schedule, momentum=0.9, weight_decay=weight_decay, nesterov=nesterov)
    if name == "lars":
        return LARS(schedule, momentum=0.9, weight_decay=weight_decay)
    if name == "adamw":
        return keras.optimizers.AdamW(schedule, weight_decay=weight_decay)
    raise ValueError(f"--optimizer={name!r} is not one of {', '.join(OPTIMIZERS)}.")


def make_views(method, *, image_size, blur, view_kwargs=None):
    """The view recipe `method` trains on, sized to `image_size`."""
    recipe_name = methods.METHODS[method].recipe_name
    # Multi-crop recipes are sized by their global crops (`global_size`).
    recipe_parameters = inspect.signature(augment.RECIPES[recipe_name]).parameters
    size_key = "image_size" if "image_size" in recipe_parameters else "global_size"
    return augment.get_recipe(recipe_name, blur=blur,
                              **{size_key: image_size, **(view_kwargs or {})})


def make_backbone(method, backbone, *, image_size, width_multiplier, zero_init_residual=False,
                  synchronized_bn=False, split_batch_norm=0, fused_batch_norm=False):
    """The encoder a run of `method` trains (and that evaluation and export rebuild).

    Methods whose views come in several sizes (multi-crop: SwAV, MIRA) get a
    backbone built to accept any image size, rather than one relaxed after the
    fact, so the exported `encoder.keras` accepts any size too.
    """
    return backbones.get(backbone, image_size=image_size,
                         width_multiplier=width_multiplier,
                         any_image_size=methods.METHODS[method].mixed_image_sizes,
                         zero_init_residual=zero_init_residual,
                         synchronized_bn=synchronized_bn,
                         split_batch_norm=split_batch_norm,
                         fused_batch_norm=fused_batch_norm)


def build_method(strategy, *, method, backbone, image_size, width_multiplier, run,
                 optimizer, learning_rate, weight_decay, warmup_steps,
                 lr_schedule="warmup_cosine", nesterov=False, method_kwargs=None,
                 zero_init_residual=False, synchronized_bn=False,
                 split_batch_norm=0, mixed_precision=False,
                 jit_compile=False, fused_batch_norm=False, encoder_init=None):
    """The compiled method with a built optimizer, every variable created under `strategy`.

    Args:
        strategy: the `tf.distribute.Strategy` the run trains under.
        method: registry name of the method.
        run: the `keras_ssl.methods.RunContext` of the run (examples, steps
            per epoch, epochs, seed): the method reads its bank size and
            schedules from it, and the learning-rate schedule spans
            `run.total_steps`.
        method_kwargs: constructor keyword arguments of the method.
        encoder_init: None, or a function given the built encoder before the
            method is, e.g. to load a trained run's weights
            (`PretrainConfig.init_encoder`): methods copy the encoder into
            their EMA models and targets when they are built, so weights
            loaded later would leave those copies at the random start.
        Other arguments: as `PretrainConfig`; `warmup_steps` in optimizer steps.

    Building the optimizer here, not at the first step, creates its slots
    under the strategy before `fit`, which a multi-worker `fit` needs
    (`keras_ssl.distribute.adapt_fit_to_multi_worker`) and which lets a
    checkpoint restore them before training starts.
    """
    with strategy.scope():
        encoder = make_backbone(method, backbone, image_size=image_size,
                                width_multiplier=width_multiplier,
                                zero_init_residual=zero_init_residual,
                                synchronized_bn=synchronized_bn,
                                split_batch_norm=split_batch_norm,
                                fused_batch_norm=fused_batch_norm)
        if encoder_init is not None:
            encoder_init(encoder)
        model = methods.get(method, encoder=encoder, run=run, **(method_kwargs or {}))
        opt = make_optimizer(optimizer, learning_rate=learning_rate,
                             weight_decay=weight_decay, total_steps=run.total_steps,
                             warmup_steps=warmup_steps, lr_schedule=lr_schedule,
                             nesterov=nesterov)
        if mixed_precision and keras.mixed_precision.global_policy().compute_dtype == "float16":
            # Loss scaling guards float16's narrow exponent; bfloat16 has float32's.
            opt = keras.optimizers.LossScaleOptimizer(opt)
        model.compile(optimizer=opt, jit_compile=jit_compile)
        opt.build(model.update_variables())
    return model
