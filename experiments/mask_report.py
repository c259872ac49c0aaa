"""How good are the foreground masks of background augmentation? Figures and a picture.

    python experiments/mask_report.py --data=../shared/data/cifar10 \
        --encoder_dir=/tmp/mask_report/byol --work_dir=/tmp/mask_report

Background Augmentations (Ryali, Schwab, Morcos, arXiv 2103.12719) are only
as good as their masks, and CIFAR-10 has no ground-truth masks to score them
against. This report measures what can be measured without labels, for the
training-free spectral-residual masks and, given a `pretrain` run in
`--encoder_dir`, the encoder's activation-norm masks (`keras_ssl.saliency`),
on the CPU protocol's training subset (`--train_per_class`, 10,000 images)
and on the test split:

- the foreground fraction per image (mean and std): a source that marks
  nearly everything, or nearly nothing, changes little;
- the foreground fraction inside the central box (the middle half of each
  side, a quarter of the area) and outside it: CIFAR objects are mostly
  centred, so an informative mask is denser in the centre than at the border;
- the foreground fraction of each image quarter: masks that favour one
  corner on every image mark a place, not objects;
- the IoU of each mask with a centred square of the same area (the
  "centre box", a prior with no information about the image): a mask that
  is mostly this box is a centre prior, not a saliency map; and, with both
  sources, the IoU between the spectral and the encoder mask of each image.
  Each IoU comes with its chance level, what masks of the same areas but
  unrelated pixels would score.

Masks are cached in `--work_dir/masks` (`keras_ssl.saliency.cached_masks`),
never in the data folder, so a second report only reads them. The figures go
to experiments/results/masks.json, `masks_table` turns them into README table
lines, which the binary writes into the README between its markers, and
docs/images/background_masks.png shows a few test images, their masks and
the BG_RM and BG_Random ops of `keras_ssl.augment.background` on them.
"""

import io
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras_ssl  # noqa: E402,F401  (sets TensorFlow's environment first)
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from experiments.readme_tables import replace_between  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_PATH = os.path.join(ROOT, "experiments", "results", "masks.json")
GRID_PATH = os.path.join(ROOT, "docs", "images", "background_masks.png")
# White pixels between the cells of the grid, so a black mask does not run
# into the image beside it.
GRID_GAP = 4
CENTRE_BOX = "the middle half of each side (a quarter of the area)"
QUADRANTS = ("top_left", "top_right", "bottom_left", "bottom_right")

FLAGS = flags.FLAGS
flags.DEFINE_string("data", "../shared/data/cifar10",
                    "Image folder with train/ and test/ class sub-folders.")
flags.DEFINE_string("encoder_dir", None,
                    "A pretrain model_dir (or checkpoint prefix) whose encoder gives the "
                    "encoder masks; without it only the spectral masks are measured.")
flags.DEFINE_string("work_dir", "/tmp/mask_report", "Masks are cached in WORK_DIR/masks.")
flags.DEFINE_integer("train_per_class", 1000,
                     "Training images per class (the CPU protocol's 1,000; 0: all).")
flags.DEFINE_integer("image_size", 32, "Side the images are read and masked at.")
flags.DEFINE_integer("grid_images", 8, "Test images (rows) in the PNG grid.")
flags.DEFINE_integer("cell_size", 96, "Side in pixels of a cell of the PNG grid.")
flags.DEFINE_integer("seed", 0, "Seed of the BG_RM / BG_Random draws in the grid.")
flags.DEFINE_string("results", RESULTS_PATH, "JSON file of the figures.")
flags.DEFINE_string("grid", GRID_PATH, "PNG file of the grid.")
flags.DEFINE_boolean("write_readme", True, "Rewrite the README's mask table.")
MASKS_START, MASKS_END = "<!-- masks:start -->", "<!-- masks:end -->"


def centre_box(size):
    """bool ``[size, size]``: the central box, the middle half of each side."""
    box = size // 4
    inside = (slice(box, size - box), slice(box, size - box))
    mask = np.zeros([size, size], bool)
    mask[inside] = True
    return mask


def centre_box_masks(masks):
    """bool ``[N, S, S]``: per mask, a centred square with (nearly) the mask's area.

    The side is the rounded square root of the mask's foreground pixel
    count, and the square starts at ``(S - side) // 2``, so a centred square
    mask (with ``S - side`` even) is its own box. A square rather than the
    mask's bounding box: the baseline must know nothing about the image but
    how much of it the mask marks.
    """
    masks = np.asarray(masks) > 0
    size = masks.shape[-1]
    sides = np.clip(np.rint(np.sqrt(masks.sum(axis=(1, 2)))), 0, size).astype(int)
    starts = (size - sides) // 2
    coordinates = np.arange(size)
    # [N, S]: whether each row (column) index lies inside that mask's square.
    inside = ((coordinates >= starts[:, None]) & (coordinates < (starts + sides)[:, None]))
    return inside[:, :, None] & inside[:, None, :]


def per_image_iou(first, second):
    """float64 ``[N]``: IoU of two mask batches; two empty masks agree (IoU 1), as `mask_iou`."""
    first, second = np.asarray(first) > 0, np.asarray(second) > 0
    intersection = (first & second).sum(axis=(1, 2))
    union = (first | second).sum(axis=(1, 2))
    return np.where(union > 0, intersection / np.maximum(union, 1), 1.0)


def independent_iou(first_fractions, second_fractions):
    """float64 ``[N]``: the IoU two masks of these areas would have with unrelated pixels.

    With the pixels of one mask scattered independently of the other's,
    intersection and union are on average ``a * b`` and ``a + b - a * b``
    of the image, so this is the chance level of any IoU between masks of
    these foreground fractions (two empty masks: 1, as `per_image_iou`).
    """
    a, b = np.asarray(first_fractions, float), np.asarray(second_fractions, float)
    union = a + b - a * b
    return np.where(union > 0, a * b / np.maximum(union, 1e-12), 1.0)


def quadrants(size):
    """[(name, (row slice, column slice))] of the four quarters of a ``size`` square.

    In `QUADRANTS` (reading) order, which the README table keeps; the JSON
    sorts its keys.
    """
    first, second = slice(0, size // 2), slice(size - size // 2, size)
    return list(zip(QUADRANTS, [(first, first), (first, second), (second, first),
                                (second, second)]))


def _figure(value):
    """A float for the JSON, to 4 decimals: a 32x32 mask's pixel is ~0.001 of it."""
    return round(float(value), 4)


def mask_statistics(masks):
    """Label-free figures of one source's masks of one split.

    Args:
        masks: ``[N, S, S]``, nonzero on the foreground (uint8 255 of the
            mask cache, or 0/1).

    Returns:
        A dict of floats: ``foreground_fraction_mean`` / ``_std`` over images,
        ``centre_fraction`` and ``border_fraction`` (mean over images of the
        foreground share inside / outside `centre_box`), their ratio
        ``centre_to_border`` (None when the border is empty everywhere), and
        ``centre_box_iou``, the mean IoU with `centre_box_masks`, beside
        ``centre_box_chance_iou``, what masks of the same areas but no centre
        bias would score (`independent_iou`); ``quadrant_fractions``, the
        foreground share of each image quarter, {top_left, top_right,
        bottom_left, bottom_right}: a source whose masks favour one corner
        on every image marks a place, not an object (a padding artefact of a
        convolutional encoder looks like this).
    """
    foreground = np.asarray(masks) > 0
    fractions = foreground.mean(axis=(1, 2))
    box = centre_box(foreground.shape[-1])
    centre = foreground[:, box].mean(axis=1).mean()
    border = foreground[:, ~box].mean(axis=1).mean()
    return {
        "images": int(len(foreground)),
        "foreground_fraction_mean": _figure(fractions.mean()),
        "foreground_fraction_std": _figure(fractions.std()),
        "centre_fraction": _figure(centre),
        "border_fraction": _figure(border),
        "centre_to_border": _figure(centre / border) if border > 0 else None,
        "centre_box_iou": _figure(per_image_iou(foreground, centre_box_masks(foreground)).mean()),
        "centre_box_chance_iou": _figure(independent_iou(fractions, fractions).mean()),
        "quadrant_fractions": {name: _figure(foreground[:, rows, cols].mean())
                               for name, (rows, cols) in quadrants(foreground.shape[-1])},
    }


def source_agreement(spectral, encoder):
    """Mean per-image IoU of the two sources' masks, and its chance level (`independent_iou`)."""
    def fractions(masks):
        return (np.asarray(masks) > 0).mean(axis=(1, 2))

    return {"spectral_vs_encoder_iou": _figure(per_image_iou(spectral, encoder).mean()),
            "chance_iou": _figure(independent_iou(fractions(spectral), fractions(encoder)).mean())}


def encoder_run(encoder_dir):
    """(encoder, description of the run) of a `pretrain` model_dir or checkpoint prefix."""
    from keras_ssl.training.trained_run import restore_encoder
    encoder, config, model_dir, prefix = restore_encoder(encoder_dir)
    return encoder, {"method": config["method"], "epochs": config["epochs"],
                     "backbone": config["backbone"],
                     "width_multiplier": config["width_multiplier"],
                     "train_per_class": config.get("train_per_class"),
                     "model_dir": model_dir, "checkpoint": os.path.basename(prefix)}


def _grid_indices(labels, count):
    """Up to ``count`` indices: the first image of each class in turn, then the next ones."""
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    # Rank of each image within its class: images of rank 0 first (one per class).
    first_of_class = np.searchsorted(sorted_labels, sorted_labels, side="left")
    rank = np.empty(len(labels), int)
    rank[order] = np.arange(len(labels)) - first_of_class
    return np.lexsort((labels, rank))[:count]


def write_grid(images, masks_by_source, path, *, cell_size=96, seed=0):
    """Writes the PNG grid: a row per image; image, each source's mask, then its BG ops.

    Columns: the image; each source's mask (white foreground); then per
    source, BG_RM (background -> the normalisation mean grey) and BG_Random
    (the foreground on another grid image's background with that image's
    own foreground filled), both with probability 1 on the whole un-cropped
    image, the mask as alpha, and a fixed seed. Cells are upscaled with
    nearest neighbours so single pixels stay visible.

    Args:
        images: uint8 ``[N, S, S, 3]``.
        masks_by_source: {source name: uint8 ``[N, S, S]`` (255 foreground)}.
        path: the PNG file.
        cell_size: side of a cell in pixels.
        seed: seed of the BG ops' draws (partners of BG_Random).

    Returns:
        The column titles, left to right.
    """
    import tensorflow as tf
    from PIL import Image

    from keras_ssl.augment import background
    from keras_ssl.data.storage import write_bytes

    views = tf.convert_to_tensor(images, tf.float32) / 255.0
    columns, titles = [np.asarray(images)], ["image"]
    for name, masks in masks_by_source.items():
        columns.append(np.repeat(np.asarray(masks)[..., None], 3, axis=-1))
        titles.append(f"{name} mask")
    for offset, (name, masks) in enumerate(masks_by_source.items()):
        removed, _ = background.remove_background(views, masks, tf.constant([seed, 2 * offset]),
                                                  probability=1.0)
        replaced, _ = background.random_background(
            views, masks, tf.constant([seed, 2 * offset + 1]), probability=1.0)
        for result, op in ((removed, "BG_RM"), (replaced, "BG_Random")):
            columns.append(np.round(np.clip(result.numpy(), 0, 1) * 255).astype(np.uint8))
            titles.append(f"{op} ({name} mask)")
    rows, cols = len(images), len(columns)
    step = cell_size + GRID_GAP
    canvas = np.full([rows * step - GRID_GAP, cols * step - GRID_GAP, 3], 255, np.uint8)
    for col, column in enumerate(columns):
        for row, cell in enumerate(column):
            enlarged = Image.fromarray(cell).resize((cell_size, cell_size), Image.NEAREST)
            canvas[row * step:row * step + cell_size,
                   col * step:col * step + cell_size] = np.asarray(enlarged)
    png = io.BytesIO()
    Image.fromarray(canvas).save(png, format="PNG")
    write_bytes(path, png.getvalue())  # any TensorFlow file system; the folder is created
    return titles


def _relative(path):
    """``path`` relative to the repository when inside it (the JSON is committed)."""
    from keras_ssl.data.storage import absolute, is_within
    path = absolute(path)  # a URL stays as it is
    return os.path.relpath(path, ROOT) if is_within(path, ROOT) else path


def mask_report(data, work_dir, *, encoder=None, encoder_info=None, encoder_dir=None,
                train_per_class=1000, image_size=32, grid_images=8, cell_size=96, seed=0,
                results_path=RESULTS_PATH, grid_path=GRID_PATH):
    """Measures the mask sources on a data set, writes the JSON and the PNG grid.

    Args:
        data: an image folder with train/ and test/ (or any
            `keras_ssl.training.load_training_data` spec).
        work_dir: masks are cached in ``work_dir/masks``.
        encoder: a trained encoder for the encoder masks (instead of
            ``encoder_dir``), described by ``encoder_info`` in the JSON.
        encoder_info: dict saying which run the encoder comes from.
        encoder_dir: a `pretrain` model_dir: its encoder and run config.
        train_per_class: the training subset (the CPU protocol: 1,000).
        image_size: side the images are read and masked at.
        grid_images, cell_size, seed: see `write_grid`.
        results_path, grid_path: the JSON and PNG files.

    Returns:
        The results dict written to ``results_path``.
    """
    import tensorflow as tf

    from keras_ssl.data.storage import write_text
    from keras_ssl.saliency import EncoderMasks, SpectralResidualMasks, cached_masks
    from keras_ssl.training import load_training_data

    start = time.perf_counter()
    if encoder_dir is not None:
        encoder, encoder_info = encoder_run(encoder_dir)
    source, train, skipped = load_training_data(data, image_size=image_size,
                                                train_per_class=train_per_class,
                                                imbalance_ratio=0.0)
    # A folder without test/ has no test split: then the grid shows training images.
    splits = {"train": train, **({"test": source.test} if source.test is not None else {})}
    sources = {"spectral": SpectralResidualMasks()}
    if encoder is not None:
        sources["encoder"] = EncoderMasks(encoder)
    cache_dir = os.path.join(work_dir, "masks")
    is_folder = not data.startswith(("tfds:", "npz:")) and tf.io.gfile.isdir(data)
    masks = {name: {split_name: cached_masks(split, mask_source, cache_dir,
                                             split_name=split_name, image_size=image_size,
                                             data_dir=data if is_folder else None)
                    for split_name, split in splits.items()}
             for name, mask_source in sources.items()}

    results = {
        "data": {"name": os.path.basename(os.path.normpath(data)),
                 "images": {name: len(split) for name, split in splits.items()},
                 "train_per_class": train_per_class, "image_size": image_size,
                 "skipped_files": skipped},
        "centre_box": CENTRE_BOX,
        "encoder": dict(encoder_info or {}) if encoder is not None else None,
        "sources": {name: {"config": mask_source.get_config(),
                           **{split_name: mask_statistics(split_masks)
                              for split_name, split_masks in masks[name].items()}}
                    for name, mask_source in sources.items()},
    }
    if "encoder" in masks:
        results["agreement"] = {split_name: source_agreement(masks["spectral"][split_name],
                                                             masks["encoder"][split_name])
                                for split_name in splits}

    grid_split = "test" if "test" in splits else "train"
    shown = splits[grid_split]
    chosen = _grid_indices(shown.labels, grid_images)
    if shown.images is not None:
        grid_pixels = shown.images[chosen]
    else:  # a streamed split: decode only the grid's images
        from keras_ssl.data import Split, decode_split
        grid_pixels = decode_split(Split(images=None, paths=[shown.paths[i] for i in chosen],
                                         labels=shown.labels[chosen]), image_size).images
    titles = write_grid(grid_pixels, {name: masks[name][grid_split][chosen] for name in sources},
                        grid_path, cell_size=cell_size, seed=seed)
    results["grid"] = {"path": _relative(grid_path), "split": grid_split,
                       "indices": chosen.tolist(), "columns": titles, "cell_size": cell_size}
    results["seconds"] = round(time.perf_counter() - start, 1)
    write_text(results_path, json.dumps(results, indent=2, sort_keys=True))
    return results


def masks_table(results):
    """README lines of a masks.json: one table row per source and split, then notes."""
    def percent(value):
        return "n/a" if value is None else f"{100 * value:.1f}%"

    lines = ["| source | split | foreground (mean ± std) | centre / border foreground "
             "| quarters TL / TR / BL / BR | IoU with centre box (chance) "
             "| IoU spectral vs encoder (chance) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    agreement = results.get("agreement", {})
    for name in sorted(results["sources"]):
        for split_name in ("train", "test"):
            r = results["sources"][name].get(split_name)
            if r is None:
                continue
            ratio = (f" ({r['centre_to_border']:.2f}x)" if r["centre_to_border"] is not None
                     else "")
            quarters = " / ".join(f"{100 * r['quadrant_fractions'][name]:.0f}%"
                                  for name in QUADRANTS)
            both = agreement.get(split_name)
            both = (f"{both['spectral_vs_encoder_iou']:.3f} ({both['chance_iou']:.3f})"
                    if both else "n/a")
            lines.append(
                f"| {name} | {split_name} ({r['images']:,} images) | "
                f"{percent(r['foreground_fraction_mean'])} ± "
                f"{percent(r['foreground_fraction_std'])} | "
                f"{percent(r['centre_fraction'])} / {percent(r['border_fraction'])}{ratio} | "
                f"{quarters} | "
                f"{r['centre_box_iou']:.3f} ({r['centre_box_chance_iou']:.3f}) | {both} |")
    encoder = results.get("encoder")
    lines.append("")
    lines.append(f"Centre box: {results['centre_box']}. IoU with centre box: each mask against "
                 "a centred square of the same area. Chance: the IoU of masks of the same "
                 "areas with unrelated pixels. The two sources agree on more than a shared "
                 "centre bias only where their IoU with each other beats their IoUs with the "
                 "centre box.")
    if encoder:
        lines.append(f"Encoder masks: the {encoder.get('backbone', 'encoder')} of a "
                     f"{encoder.get('epochs')}-epoch {encoder.get('method')} run "
                     "(activation norm of its last stage, cut at its mean).")
    grid = results.get("grid")
    if grid:
        lines.append(f"\n![{grid['split']} images; columns: {', '.join(grid['columns'])}]"
                     f"({grid['path']})")
    return lines


def main(argv):
    del argv
    try:
        results = mask_report(FLAGS.data, FLAGS.work_dir, encoder_dir=FLAGS.encoder_dir,
                              train_per_class=FLAGS.train_per_class,
                              image_size=FLAGS.image_size, grid_images=FLAGS.grid_images,
                              cell_size=FLAGS.cell_size, seed=FLAGS.seed,
                              results_path=FLAGS.results, grid_path=FLAGS.grid)
    except (ValueError, FileNotFoundError) as error:
        print(f"mask_report.py: error: {error}", file=sys.stderr)
        sys.exit(2)
    lines = masks_table(results)
    print("\n".join(lines), flush=True)
    if FLAGS.write_readme:
        replace_between(MASKS_START, MASKS_END, lines)
    print(json.dumps({"results": FLAGS.results, "grid": FLAGS.grid,
                      "seconds": results["seconds"]}), flush=True)


if __name__ == "__main__":
    app.run(main)
