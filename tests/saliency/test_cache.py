"""The mask cache: index order, reuse without recomputing, rebuilds, clear errors, file splits."""

import os

import numpy as np
import pytest
from PIL import Image

from keras_ssl.data import Split
from keras_ssl.saliency import cache
from keras_ssl.saliency.cache import MaskFileError, cached_masks, load_mask_file
from keras_ssl.saliency.spectral import SpectralResidualMasks
from tests.saliency.blobs import blob_images


class CountingSource:
    """A mask source that counts how often its masks are computed (traced or run)."""

    def __init__(self, **options):
        self.inner = SpectralResidualMasks(**options)
        self.name = self.inner.name
        self.calls = 0

    def __call__(self, images):
        self.calls += 1
        return self.inner(images)

    def get_config(self):
        return self.inner.get_config()


def uint8_blobs(count=6, size=16, seed=0):
    images, _ = blob_images(count, size, radius=3, seed=seed)
    return np.round(images * 255).astype(np.uint8)


def in_memory_split(images):
    return Split(images=images, paths=None, labels=np.zeros(len(images)))


def test_masks_are_in_index_order_and_reused_without_recomputing(tmp_path):
    images = uint8_blobs()
    split, source = in_memory_split(images), CountingSource()
    masks = cached_masks(split, source, tmp_path / "masks", image_size=16, batch_size=4)
    assert masks.dtype == np.uint8 and masks.shape == (6, 16, 16)
    assert set(np.unique(masks)) <= {0, 255}
    expected = source.inner(images.astype(np.float32) / 255.0).numpy() * 255
    np.testing.assert_array_equal(masks, expected.astype(np.uint8))
    computed = source.calls
    assert computed > 0

    again = cached_masks(split, source, tmp_path / "masks", image_size=16, batch_size=4)
    assert source.calls == computed
    np.testing.assert_array_equal(again, masks)
    path = cache.mask_file_path(tmp_path / "masks", source, "train")
    assert os.path.basename(path) == "train_spectral_masks.npz"
    np.testing.assert_array_equal(load_mask_file(path)["masks"], masks)


def test_rebuilt_when_the_data_or_the_source_change(tmp_path):
    images = uint8_blobs()
    source = CountingSource()
    first = cached_masks(in_memory_split(images), source, tmp_path, image_size=16)
    calls = source.calls

    changed = images.copy()
    changed[2] = uint8_blobs(1, seed=7)[0]
    rebuilt = cached_masks(in_memory_split(changed), source, tmp_path, image_size=16)
    assert source.calls > calls
    assert not np.array_equal(rebuilt[2], first[2])
    np.testing.assert_array_equal(rebuilt[[0, 1, 3, 4, 5]], first[[0, 1, 3, 4, 5]])

    calls = source.calls
    stricter = CountingSource(mean_factor=2.0)
    cached_masks(in_memory_split(changed), stricter, tmp_path, image_size=16)
    assert stricter.calls > 0
    cached_masks(in_memory_split(changed), stricter, tmp_path, image_size=16)
    assert source.calls == calls  # the old source was not asked again


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong_array"])
def test_a_damaged_mask_file_is_a_clear_error_naming_it(tmp_path, damage):
    split, source = in_memory_split(uint8_blobs()), SpectralResidualMasks()
    cached_masks(split, source, tmp_path, image_size=16)
    path = cache.mask_file_path(tmp_path, source)
    if damage == "garbage":
        with open(path, "wb") as file:
            file.write(b"not a mask file")
    elif damage == "truncated":
        with open(path, "rb") as file:
            data = file.read()
        with open(path, "wb") as file:
            file.write(data[: len(data) // 2])
    else:
        contents = load_mask_file(path)
        cache.write_mask_file(path, contents["masks"].astype(np.float32),
                              data_fingerprint=contents["data_fingerprint"],
                              source_config=contents["source_config"])
    with pytest.raises(MaskFileError, match=str(path)):
        cached_masks(split, source, tmp_path, image_size=16)


def test_a_missing_mask_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.npz"):
        load_mask_file(str(tmp_path / "nowhere.npz"))


def _write_files(folder, images):
    paths = []
    for index, image in enumerate(images):
        path = os.path.join(folder, f"class_{index % 2}", f"{index:02d}.png")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def test_streamed_split_gives_the_in_memory_masks_and_refuses_a_cache_in_the_data(tmp_path):
    images = uint8_blobs(5)
    paths = _write_files(tmp_path / "data", images)
    streamed = Split(images=None, paths=paths, labels=np.zeros(5))
    source = CountingSource()
    masks = cached_masks(streamed, source, tmp_path / "run" / "masks", image_size=16,
                         batch_size=2)
    np.testing.assert_array_equal(
        masks, cached_masks(in_memory_split(images), SpectralResidualMasks(),
                            tmp_path / "memory", image_size=16))
    with pytest.raises(ValueError, match="inside the data folder"):
        cached_masks(streamed, source, tmp_path / "data" / "masks", image_size=16)
    in_memory = in_memory_split(images)
    with pytest.raises(ValueError, match="inside the data folder"):
        cached_masks(in_memory, source, tmp_path / "data" / "masks", image_size=16,
                     data_dir=tmp_path / "data")
    with pytest.raises(ValueError, match="needs image_size"):
        cached_masks(streamed, source, tmp_path / "run" / "masks")

    # Rewriting a file changes the fingerprint: the masks are rebuilt.
    before = cache.split_fingerprint(streamed, 16)
    Image.fromarray(uint8_blobs(1, seed=9)[0]).save(paths[1])
    os.utime(paths[1], ns=(1, 1))
    assert cache.split_fingerprint(streamed, 16) != before
    calls = source.calls
    cached_masks(streamed, source, tmp_path / "run" / "masks", image_size=16)
    assert source.calls > calls
