"""Foreground masks computed once per data set and cached beside the run.

Background Augmentations (Ryali, Schwab, Morcos, arXiv 2103.12719) precompute
one saliency mask per training image offline (methods-b.md §3); here a mask
source (`SpectralResidualMasks`, `EncoderMasks`) runs over a split once, in
index order, and the masks are kept in one file in a directory the caller
gives (e.g. under the run's model dir), never inside the data folder.

The file, ``<cache_dir>/<split_name>_<source name>_masks.npz``, holds:

- ``masks``: uint8 ``[N, S, S]``, row ``i`` the mask of example ``i`` of the
  split, 255 on the foreground and 0 on the background (the scale of uint8
  images, so the pipeline divides both by 255 alike, and a mask saved as a
  PNG is visible);
- ``data_fingerprint``: a hash of what the masks were computed from (see
  `split_fingerprint`) and the mask side;
- ``source_config``: the source's `get_config` as sorted JSON;
- ``version``: the file layout's version.

`cached_masks` reuses the file when both fingerprints match and rebuilds it
(with a logged message saying why) when the data or the source changed. A
file that exists but cannot be read, or whose contents are malformed, raises
`MaskFileError` naming the file rather than being silently replaced: the file
was written atomically, so damage means something outside this code touched
it, and the user should look before it is deleted (deleting it rebuilds it).
"""

import hashlib
import io
import json
import os
import zipfile

import numpy as np
import tensorflow as tf
from absl import logging

from keras_ssl.data import storage
from keras_ssl.data.pipeline import eval_dataset

MASK_FILE_VERSION = 1
FOREGROUND = 255


class MaskFileError(ValueError):
    """A mask file exists but is unreadable or malformed; the message names it."""


def split_fingerprint(split, image_size=None):
    """SHA-256 (hex) of what a split's masks depend on.

    In-memory splits hash the image bytes and shape. Streamed splits hash
    each file's path, size and modification time rather than its bytes:
    reading every byte of an ImageNet-size folder to check a cache would
    cost as much as a pass over the data, and a file rewritten in place
    changes its size or time. The mask side ``image_size`` is hashed too.

    Args:
        split: a `keras_ssl.data.Split`.
        image_size: the side the masks are computed at (None: stored size).
    """
    digest = hashlib.sha256()
    digest.update(f"image_size={image_size}\n".encode())
    if split.images is not None:
        digest.update(f"array {split.images.shape} {split.images.dtype}\n".encode())
        digest.update(np.ascontiguousarray(split.images).tobytes())
    else:
        for path in split.paths:
            size, mtime_ns = storage.file_signature(path)
            digest.update(f"{path}\t{size}\t{mtime_ns}\n".encode())
    return digest.hexdigest()


def source_fingerprint(source):
    """The source's config as canonical JSON: equal strings, equal masks."""
    return json.dumps(source.get_config(), sort_keys=True, default=str)


def mask_side(split, image_size=None):
    """The side of the split's masks: ``image_size``, or the in-memory images' own."""
    if image_size is not None:
        return int(image_size)
    if split.images is None:
        raise ValueError("A streamed split (image files) needs image_size: its files may differ "
                         "in size, and the masks must have the size the pipeline reads at.")
    height, width = split.images.shape[1:3]
    if height != width:
        raise ValueError(f"Masks of non-square images ({height}x{width}) need image_size.")
    return int(height)


def compute_masks(split, source, *, image_size=None, batch_size=256):
    """Runs a mask source over a split in index order.

    Images are read as evaluation reads them (`keras_ssl.data.eval_dataset`:
    stored order, resized to ``image_size``, float in [0, 1]), so the masks
    line up with what the training pipeline gathers by index. A streamed
    file that fails to decode (the eval pipeline skips it with a warning)
    gets an all-foreground mask, which background augmentations leave as it
    is.

    Args:
        split: a `keras_ssl.data.Split`, in memory or streamed.
        source: a mask source: ``source(images [B, S, S, 3]) -> [B, S, S]`` of 0/1.
        image_size: the mask side (see `mask_side`).
        batch_size: images per call of the source.

    Returns:
        uint8 ``[N, S, S]``: 255 on the foreground, 0 on the background.
    """
    side = mask_side(split, image_size)
    masks = np.full([len(split), side, side], FOREGROUND, np.uint8)
    # Eager calls: a batch of 256 is a handful of large ops, so tracing a
    # function (once per run, twice for the short last batch) buys little.
    seen = np.zeros(len(split), bool)
    for batch in eval_dataset(split, batch_size=batch_size, image_size=side):
        indices = batch["index"].numpy()
        batch_masks = np.asarray(source(batch["image"]))
        masks[indices] = np.where(batch_masks > 0.5, FOREGROUND, 0).astype(np.uint8)
        seen[indices] = True
    if not seen.all():
        logging.warning("%d of %d images could not be read; their masks are all foreground.",
                        int((~seen).sum()), len(split))
    return masks


def mask_file_path(cache_dir, source, split_name="train"):
    """``<cache_dir>/<split_name>_<source.name>_masks.npz``."""
    return os.path.join(cache_dir, f"{split_name}_{source.name}_masks.npz")


def write_mask_file(path, masks, *, data_fingerprint, source_config):
    """Writes the mask file atomically (a temporary file, then a rename)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, masks=masks, data_fingerprint=np.array(data_fingerprint),
                        source_config=np.array(source_config),
                        version=np.array(MASK_FILE_VERSION))
    # A run killed mid-write leaves the temporary file, never half a mask file.
    storage.write_bytes(path, buffer.getvalue(), atomic=True)


def load_mask_file(path):
    """Reads a mask file.

    Returns:
        ``{"masks": uint8 [N, S, S], "data_fingerprint": str, "source_config": str}``.

    Raises:
        FileNotFoundError: no file at ``path`` (the message names it).
        MaskFileError: the file is unreadable or malformed (the message names it).
    """
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"Mask file {path} does not exist.")
    try:
        # The whole file is read at once: np.load would otherwise seek through it in
        # small reads, each a request on a remote file system.
        with np.load(io.BytesIO(storage.read_bytes(path)), allow_pickle=False) as contents:
            masks = contents["masks"]
            data_fingerprint = str(contents["data_fingerprint"])
            source_config = str(contents["source_config"])
            version = int(contents["version"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile,
            tf.errors.OpError) as error:
        raise MaskFileError(
            f"Mask file {path} is unreadable ({type(error).__name__}: {error}). Delete it to "
            "have the masks computed again.") from error
    if version != MASK_FILE_VERSION:
        raise MaskFileError(f"Mask file {path} has layout version {version}; this code reads "
                            f"version {MASK_FILE_VERSION}. Delete it to rebuild it.")
    if masks.dtype != np.uint8 or masks.ndim != 3:
        raise MaskFileError(f"Mask file {path} holds {masks.dtype} {masks.shape} masks; "
                            "expected uint8 [N, S, S]. Delete it to rebuild it.")
    return {"masks": masks, "data_fingerprint": data_fingerprint, "source_config": source_config}


def _deepest_common_folder(folders):
    """The deepest folder holding all of `folders` (`storage.absolute` spellings), or None.

    Compared component by component on '/', which, unlike `os.path.commonpath`, keeps
    the `//` of a URL; folders on different file systems share none.
    """
    common = []
    for components in zip(*(folder.split("/") for folder in folders)):
        if any(component != components[0] for component in components):
            break
        common.append(components[0])
    if common == [""]:  # local folders that share only the root
        return "/"
    return "/".join(common) or None


def _check_outside_data(cache_dir, split, data_dir=None):
    """Refuses a cache directory inside the data folder.

    The data folder is ``data_dir`` when the caller knows it (the ``--data``
    path), and for a streamed split also the deepest folder holding all its
    files.
    """
    data_roots = [] if data_dir is None else [storage.absolute(data_dir)]
    if split.paths:
        common = _deepest_common_folder([storage.parent(p) for p in split.paths])
        data_roots += [common] if common else []
    cache = storage.absolute(cache_dir)
    for data_root in data_roots:
        if storage.is_within(cache, data_root):
            raise ValueError(f"The mask cache {cache_dir} is inside the data folder "
                             f"{data_root}; keep it beside the run (e.g. under --model_dir).")


def cached_masks(split, source, cache_dir, *, split_name="train", image_size=None,
                 batch_size=256, data_dir=None):
    """The split's masks from the cache, computed and written first when needed.

    Args:
        split: a `keras_ssl.data.Split`, in memory or streamed.
        source: a mask source (`SpectralResidualMasks`, `EncoderMasks`).
        cache_dir: the directory of the mask files, e.g. ``MODEL_DIR/masks``;
            never inside the data folder.
        split_name: names the file, so train and test masks live side by side.
        image_size: the mask side: the size the training pipeline reads the
            split at (None: the in-memory images' own size).
        batch_size: images per call of the source when computing.
        data_dir: the data folder, if known; the cache may not be inside it.

    Returns:
        uint8 ``[N, S, S]``, 255 on the foreground, rows in the split's order.

    Raises:
        MaskFileError: the cached file exists but is unreadable or malformed.
    """
    _check_outside_data(cache_dir, split, data_dir)
    path = mask_file_path(cache_dir, source, split_name)
    side = mask_side(split, image_size)
    data_fingerprint = split_fingerprint(split, side)
    source_config = source_fingerprint(source)
    if tf.io.gfile.exists(path):
        cached = load_mask_file(path)
        if cached["data_fingerprint"] != data_fingerprint:
            logging.info("Mask file %s was computed from other data; rebuilding it.", path)
        elif cached["source_config"] != source_config:
            logging.info("Mask file %s was computed by another mask source (%s); rebuilding it "
                         "for %s.", path, cached["source_config"], source_config)
        elif cached["masks"].shape != (len(split), side, side):
            raise MaskFileError(
                f"Mask file {path} holds masks of shape {cached['masks'].shape} but its "
                f"fingerprints match a split of {len(split)} images of {side} px. Delete it "
                "to rebuild it.")
        else:
            return cached["masks"]
    else:
        logging.info("Computing %s masks of %d images into %s.", source.name, len(split), path)
    masks = compute_masks(split, source, image_size=side, batch_size=batch_size)
    write_mask_file(path, masks, data_fingerprint=data_fingerprint, source_config=source_config)
    return masks
