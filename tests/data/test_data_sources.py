"""load_source on image folders, npz files and (mocked) tfds, including unreadable files."""

import os
import warnings

import numpy as np
import pytest
from PIL import Image

from keras_ssl.data import decode_split, eval_dataset, load_source, per_class_subset
from tests.data.image_writers import solid_image, write_image

CIFAR10 = "/work/shared/data/cifar10"
BAD_FILES = ["empty.jpg", "text.jpg", "trunc.jpg"]


def _gray(value):
    """What a grayscale save of solid_image(value) decodes to (all three channels)."""
    return int(np.asarray(Image.fromarray(solid_image(value)).convert("L"))[0, 0])


def test_folder_decodes_every_format_and_skips_bad_files(mixed_folder):
    with pytest.warns(UserWarning, match="Skipped 3 unreadable") as record:
        source = load_source(mixed_folder)
    assert len([w for w in record if "unreadable" in str(w.message)]) == 1
    message = str(record[0].message)
    for name in BAD_FILES:
        assert name in message
    assert sorted(os.path.basename(p) for p in source.skipped_files) == BAD_FILES

    assert source.class_names == ["cat", "dog"]
    assert source.num_classes == 2
    assert source.test is None
    train = source.train
    assert train.paths is None
    assert train.images.shape == (7, 16, 16, 3) and train.images.dtype == np.uint8
    np.testing.assert_array_equal(train.labels, [0, 0, 0, 0, 0, 1, 1])
    # Sorted order a.jpg, b.PNG, c.bmp, d.gif, e.JPEG, f.png, g.jpg; the first pixel tells
    # which file each row came from.
    first_pixels = train.images[:, 0, 0].astype(int)
    np.testing.assert_allclose(first_pixels[0], [10, 100, 200], atol=3)  # JPEG: nearly exact
    np.testing.assert_array_equal(first_pixels[1], [20, 100, 200])  # RGBA: alpha dropped
    np.testing.assert_array_equal(first_pixels[2], [_gray(30)] * 3)  # grayscale BMP
    np.testing.assert_array_equal(first_pixels[3], [40, 100, 200])  # GIF: first frame, not 250
    np.testing.assert_allclose(first_pixels[4], [_gray(50)] * 3, atol=2)  # grayscale JPEG
    np.testing.assert_array_equal(first_pixels[5], [60, 100, 200])
    np.testing.assert_allclose(first_pixels[6], [70, 100, 200], atol=3)


def test_folder_streamed_when_over_cache_limit(mixed_folder):
    with pytest.warns(UserWarning, match="Skipped 2 unreadable"):
        source = load_source(mixed_folder, cache_limit_bytes=0)
    train = source.train
    assert train.images is None
    # The cheap header check catches the empty and the text file; the truncated JPEG has
    # a valid header and is dropped later, when tf.data fails to decode it.
    assert [os.path.basename(p) for p in train.paths] == [
        "a.jpg", "b.PNG", "c.bmp", "d.gif", "e.JPEG", "f.png", "g.jpg", "trunc.jpg"
    ]
    batches = list(eval_dataset(train, batch_size=3).as_numpy_iterator())
    indices = np.concatenate([b["index"] for b in batches])
    np.testing.assert_array_equal(indices, [0, 1, 2, 3, 4, 5, 6])  # 7 = trunc.jpg, dropped
    images = np.concatenate([b["image"] for b in batches])
    assert images.shape == (7, 16, 16, 3) and images.dtype == np.float32
    np.testing.assert_allclose(images[3, 0, 0] * 255, [40, 100, 200], atol=0.5)  # GIF frame 0
    np.testing.assert_allclose(images[2, 0, 0] * 255, [_gray(30)] * 3, atol=0.5)


def test_folder_with_train_and_test_splits(tmp_path):
    for split, count in (("train", 3), ("test", 2)):
        for class_name in ("b_class", "a_class"):
            for i in range(count):
                write_image(str(tmp_path / split / class_name / f"{i}.png"), solid_image(i))
    source = load_source(str(tmp_path))
    assert source.class_names == ["a_class", "b_class"]
    np.testing.assert_array_equal(source.train.labels, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(source.test.labels, [0, 0, 1, 1])
    assert source.train.images.shape == (6, 16, 16, 3)
    assert source.test.images.shape == (4, 16, 16, 3)
    assert source.skipped_files == []


def test_test_split_with_unknown_class_is_an_error(tmp_path):
    write_image(str(tmp_path / "train" / "cat" / "0.png"), solid_image(0))
    write_image(str(tmp_path / "test" / "cow" / "0.png"), solid_image(0))
    with pytest.raises(ValueError, match="cow"):
        load_source(str(tmp_path))


def test_unlabeled_folder_in_sorted_order(tmp_path):
    # "10" sorts before "2": plain string order, as the file listing promises.
    for name, value in (("2.png", 2), ("10.PNG", 10), ("3.jpg", 3)):
        write_image(str(tmp_path / name), solid_image(value), **({"quality": 95} if name.endswith("jpg") else {}))
    source = load_source(str(tmp_path))
    assert source.class_names == [] and source.num_classes == 0 and source.test is None
    np.testing.assert_array_equal(source.train.labels, [-1, -1, -1])
    np.testing.assert_allclose(source.train.images[:, 0, 0, 0].astype(int), [10, 2, 3], atol=3)


def test_mixed_sizes_need_image_size(tmp_path):
    write_image(str(tmp_path / "a" / "0.png"), solid_image(5, size=(16, 16)))
    write_image(str(tmp_path / "a" / "1.png"), solid_image(9, size=(12, 20)))
    with pytest.raises(ValueError, match="image_size"):
        load_source(str(tmp_path))
    source = load_source(str(tmp_path), image_size=8)
    assert source.train.images.shape == (2, 8, 8, 3)
    np.testing.assert_array_equal(source.train.images[:, 3, 3], [[5, 100, 200], [9, 100, 200]])


def test_npz_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, [6, 8, 8, 3], dtype=np.uint8)
    x_test = rng.integers(0, 256, [4, 8, 8, 3], dtype=np.uint8)
    y_train = np.array([[0], [1], [2], [0], [1], [2]], np.uint8)  # [N, 1] like keras.datasets
    y_test = np.array([2, 1, 0, 0])
    path = str(tmp_path / "arrays.npz")
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    source = load_source(f"npz:{path}")
    np.testing.assert_array_equal(source.train.images, x_train)
    np.testing.assert_array_equal(source.test.images, x_test)
    np.testing.assert_array_equal(source.train.labels, [0, 1, 2, 0, 1, 2])
    np.testing.assert_array_equal(source.test.labels, y_test)
    assert source.train.labels.dtype == np.int64
    assert source.class_names == ["0", "1", "2"] and source.num_classes == 3


def test_npz_grayscale_becomes_rgb_and_resizes(tmp_path):
    x_train = np.full([3, 6, 6], 77, np.uint8)  # [N, H, W] like keras.datasets.mnist
    path = str(tmp_path / "gray.npz")
    np.savez(path, x_train=x_train, y_train=np.array([1, 0, 1]))
    source = load_source(f"npz:{path}", image_size=4)
    assert source.test is None
    assert source.train.images.shape == (3, 4, 4, 3)
    assert np.all(source.train.images == 77)


def test_tfds_source_with_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    # mock_data generates random examples from the feature spec shipped with tfds, so this
    # runs offline; cifar10 split metadata is not shipped, which exercises the fallback.
    with tfds.testing.mock_data(num_examples=12):
        source = load_source("tfds:cifar10")
        resized = load_source("tfds:cifar10", image_size=16)
        gray = load_source("tfds:mnist")  # 28x28x1 images become RGB
    assert source.train.images.shape == (12, 32, 32, 3)
    assert source.test.images.shape == (12, 32, 32, 3)
    assert source.train.images.dtype == np.uint8
    assert source.num_classes == 10 and len(source.class_names) == 10
    assert source.train.labels.dtype == np.int64
    assert np.all((source.train.labels >= 0) & (source.train.labels < 10))
    assert resized.train.images.shape == (12, 16, 16, 3)
    assert gray.train.images.shape == (12, 28, 28, 3)
    np.testing.assert_array_equal(gray.train.images[..., 0], gray.train.images[..., 2])


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("", "empty"),
        ("tfds:", "no data set name"),
        ("/no/such/folder", "does not exist"),
        ("npz:/no/such/file.npz", "no file"),
    ],
)
def test_bad_spec_names_spec_and_valid_forms(spec, fragment):
    with pytest.raises(ValueError, match=fragment) as error:
        load_source(spec)
    message = str(error.value)
    assert "tfds:NAME" in message and "npz:PATH" in message
    if spec:
        assert spec in message


def test_unknown_tfds_name_is_value_error():
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(ValueError, match="no_such_dataset_xyz"):
        load_source("tfds:no_such_dataset_xyz")


def test_file_instead_of_folder_and_empty_folder(tmp_path):
    path = write_image(str(tmp_path / "one.png"), solid_image(1))
    with pytest.raises(ValueError, match="is a file"):
        load_source(path)
    os.makedirs(tmp_path / "empty" / "cat")
    with pytest.raises(ValueError, match="No image files"):
        load_source(str(tmp_path / "empty"))


def test_clean_folder_gives_no_warning(tmp_path):
    write_image(str(tmp_path / "cat" / "0.png"), solid_image(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        source = load_source(str(tmp_path))
    assert source.skipped_files == []


@pytest.mark.skipif(not os.path.isdir(CIFAR10), reason="CIFAR-10 image folder not present")
def test_real_cifar10_folder_per_class_subset():
    # cache_limit_bytes=0 lists the 60k files without decoding them; only the subset is decoded.
    source = load_source(CIFAR10, cache_limit_bytes=0)
    assert len(source.train) == 50000 and len(source.test) == 10000
    assert source.class_names[:2] == ["airplane", "automobile"] and source.num_classes == 10
    subset = decode_split(per_class_subset(source.train, per_class=20))
    assert subset.images.shape == (200, 32, 32, 3)
    np.testing.assert_array_equal(np.bincount(subset.labels), [20] * 10)
    np.testing.assert_array_equal(np.unique(subset.labels), np.arange(10))
    assert subset.images.std() > 10  # real photographs, not blank arrays
