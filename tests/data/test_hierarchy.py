"""Class hierarchy files: the parser, its errors (naming file and line), the CIFAR-10 tree,
and which labeled examples keep their fine label."""

import numpy as np
import pytest

from keras_ssl.data import hierarchy


def test_builtin_cifar10_hierarchy():
    tree = hierarchy.CIFAR10
    assert tree.fine_classes == hierarchy.CIFAR10_CLASSES
    assert tree.num_classes == (10, 6, 2)
    middle, top = tree.level_maps
    vehicles = {tree.fine_classes[i] for i in np.flatnonzero(top == top[0])}
    assert vehicles == {"airplane", "automobile", "ship", "truck"}
    # A tree: every middle class lies under one top class.
    for group in range(6):
        assert len(set(top[middle == group])) == 1
    groups = {name: tree.level_classes[0][middle[i]] for i, name in enumerate(tree.fine_classes)}
    assert groups["cat"] == groups["dog"] == "carnivore"
    assert groups["deer"] == groups["horse"] == "ungulate"
    assert groups["airplane"] == groups["ship"] == "craft"


def test_two_column_file_with_names_and_comments(tmp_path):
    path = tmp_path / "tree.txt"
    path.write_text("# fine, coarse\nzebra, animal\n\ncar vehicle  # wheels\nant animal\n")
    tree = hierarchy.read_hierarchy(path)
    assert tree.fine_classes == ("ant", "car", "zebra")  # sorted, as class folders are
    assert tree.level_classes == (("animal", "vehicle"),)
    np.testing.assert_array_equal(tree.level_maps[0], [0, 1, 0])
    ordered = hierarchy.read_hierarchy(path, class_names=["car", "ant", "zebra"])
    np.testing.assert_array_equal(ordered.level_maps[0], [1, 0, 0])


def test_integer_classes_are_class_indices():
    tree = hierarchy.parse_hierarchy("1 0\n0 1\n2 1\n")
    assert tree.fine_classes == ("0", "1", "2")
    # Coarse classes are numbered in order of appearance: "0" first.
    np.testing.assert_array_equal(tree.level_maps[0], [1, 0, 1])


BAD_FILES = [
    ("a x\nb\n", "line 2", "2 or more columns"),
    ("a x m\nb y\n", "line 2", "2 columns, but line 1 has 3"),
    ("a x\nb y\na y\n", "line 3", "already mapped on line 1"),
    ("a x top1\nb x top2\n", "line 2", "form a tree"),
    ("# nothing\n\n", "no lines", "no lines"),
]


@pytest.mark.parametrize("text, where, what", BAD_FILES)
def test_bad_files_name_the_file_and_the_line(tmp_path, text, where, what):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=what) as error:
        hierarchy.read_hierarchy(path)
    assert str(path) in str(error.value) and where in str(error.value)


def test_classes_must_match_the_data(tmp_path):
    path = tmp_path / "tree.txt"
    path.write_text("a x\nb y\nc y\n")
    with pytest.raises(ValueError, match=r"line 3: 'c' is not a class"):
        hierarchy.read_hierarchy(path, class_names=["a", "b", "d"])
    with pytest.raises(ValueError, match="no line maps the classes d"):
        hierarchy.read_hierarchy(path, class_names=["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="0..2"):
        hierarchy.parse_hierarchy("0 x\n1 x\n3 y\n")
    with pytest.raises(ValueError, match="'cifar10' or the path"):
        hierarchy.get_hierarchy(str(tmp_path / "missing.txt"))


def test_known_levels_are_seeded_shares_and_the_same_in_graph_ops():
    indices = np.arange(20000)
    levels = hierarchy.known_levels(indices, (0.6, 0.2, 0.2), seed=3)
    np.testing.assert_allclose(np.bincount(levels) / len(indices), [0.6, 0.2, 0.2], atol=0.015)
    np.testing.assert_array_equal(hierarchy.known_levels_tf(indices, (0.6, 0.2, 0.2), 3),
                                  levels)
    # Fixed per example: any subset (a smaller budget) keeps its levels.
    np.testing.assert_array_equal(hierarchy.known_levels(indices[::7], (0.6, 0.2, 0.2), 3),
                                  levels[::7])
    assert not np.array_equal(hierarchy.known_levels(indices, (0.6, 0.2, 0.2), 4), levels)
    assert not hierarchy.known_levels(indices, (1.0, 0.0), 3).any()
    with pytest.raises(ValueError, match="sum to 1"):
        hierarchy.known_levels(indices, (0.5, 0.2), 3)
