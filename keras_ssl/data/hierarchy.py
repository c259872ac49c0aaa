"""Class hierarchies for HierMatch: a file format, its parser, and a built-in one for CIFAR-10.

A hierarchy file has one line per fine class: the fine class, then its parent
at each coarser level, separated by whitespace or commas. Two columns give one
coarse level; three give a middle and a top level. Classes are names or
integers; blank lines and text after `#` are ignored. Every line must have
as many columns as the first, each fine class appears once, and a class of a
coarser level has one parent (the levels form a tree). Breaking any of these
raises a ValueError naming the file and the line.

Example file (CIFAR-10 with vehicles and animals only)::

    airplane   vehicle
    automobile vehicle
    bird       animal
    ...

Fine classes given as names are numbered as the data sources number class
folders, in sorted order (pass `class_names` to say otherwise); integers are
class indices. Coarser classes are numbered in order of first appearance.

The built-in CIFAR-10 hierarchy (`CIFAR10`) has two levels above the ten
classes. The top level is vehicles / animals. The middle level joins each
class to the others under its lowest WordNet hypernym below the top, when
that hypernym is shared: airplane and ship are craft (craft.n.02), automobile
and truck are motor vehicles (motor_vehicle.n.01), cat and dog are carnivores
(carnivore.n.01), deer and horse are ungulates (ungulate.n.01); bird
(bird.n.01) and frog (its hypernym amphibian.n.03) share only vertebrate.n.01
and stay on their own. Middle classes: 6; top: 2.

`known_levels` decides, for HierMatch's partial-label protocol, which
labeled examples keep their fine label and which only a coarser one.
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np
import tensorflow as tf

from keras_ssl.data.mixing import splitmix64, splitmix64_tf, stream_base

# Salt of the hash stream that withholds fine labels ("hier").
SALT_WITHHELD = 0x68696572

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")

CIFAR10_TEXT = """\
# fine        middle (WordNet)   top
airplane      craft              vehicle
automobile    motor_vehicle      vehicle
bird          bird               animal
cat           carnivore          animal
deer          ungulate           animal
dog           carnivore          animal
frog          amphibian          animal
horse         ungulate           animal
ship          craft              vehicle
truck         motor_vehicle      vehicle
"""

_SEPARATOR = re.compile(r"[\s,]+")


@dataclasses.dataclass(frozen=True)
class ClassHierarchy:
    """Fine classes and their parents at each coarser level.

    Attributes:
        fine_classes: the fine class names, in class-index order.
        level_classes: for each coarser level (finer first), its class names.
        level_maps: for each coarser level, int64 [C_fine]: the level's class
            index of each fine class.
    """

    fine_classes: tuple
    level_classes: tuple
    level_maps: tuple

    @property
    def num_classes(self):
        """Classes at every level, the fine level first."""
        return (len(self.fine_classes),) + tuple(len(c) for c in self.level_classes)


def parse_hierarchy(text, *, source="<hierarchy>", class_names=None):
    """Parses hierarchy `text` (the file format above); errors name `source` and the line.

    Args:
        text: the file's contents.
        source: what the errors call the file (its path).
        class_names: the fine classes in class-index order; default the
            sorted names (or, for integer classes, 0..C-1).

    Returns:
        A `ClassHierarchy`.
    """
    rows = []  # (line number, fields)
    for number, line in enumerate(text.splitlines(), start=1):
        fields = [f for f in _SEPARATOR.split(line.split("#", 1)[0].strip()) if f]
        if not fields:
            continue
        where = f"{source}, line {number}"
        if len(fields) < 2:
            raise ValueError(f"{where}: a line maps a fine class to its coarse class "
                             f"(2 or more columns); got {line.strip()!r}.")
        if rows and len(fields) != len(rows[0][1]):
            raise ValueError(f"{where}: {len(fields)} columns, but line {rows[0][0]} has "
                             f"{len(rows[0][1])}; every line needs one class per level.")
        rows.append((number, fields))
    if not rows:
        raise ValueError(f"{source}: the hierarchy has no lines.")

    seen = {}
    parents = [{} for _ in range(len(rows[0][1]) - 1)]
    for number, fields in rows:
        fine = fields[0]
        if fine in seen:
            raise ValueError(f"{source}, line {number}: fine class {fine!r} was already "
                             f"mapped on line {seen[fine]}.")
        seen[fine] = number
        for level in range(1, len(fields) - 1):
            child, parent = fields[level], fields[level + 1]
            known = parents[level].get(child)
            if known is not None and known[0] != parent:
                raise ValueError(f"{source}, line {number}: {child!r} has parent {parent!r}, "
                                 f"but line {known[1]} gives it {known[0]!r}; the levels must "
                                 "form a tree.")
            parents[level].setdefault(child, (parent, number))

    names = list(seen)
    if class_names is None:
        integers = all(re.fullmatch(r"[0-9]+", name) for name in names)
        class_names = (sorted(names, key=int) if integers else sorted(names))
        if integers and [int(n) for n in class_names] != list(range(len(names))):
            raise ValueError(f"{source}: integer fine classes must be 0..{len(names) - 1}, each "
                             f"once; got {', '.join(class_names)}.")
    class_names = [str(name) for name in class_names]
    unknown = [(seen[n], n) for n in names if n not in class_names]
    if unknown:
        number, name = min(unknown)
        raise ValueError(f"{source}, line {number}: {name!r} is not a class of the data "
                         f"({', '.join(class_names)}).")
    missing = [name for name in class_names if name not in seen]
    if missing:
        raise ValueError(f"{source}: no line maps the classes {', '.join(missing)}.")

    fields_of = {fields[0]: fields for _, fields in rows}
    level_classes, level_maps = [], []
    for level in range(1, len(rows[0][1])):
        order = list(dict.fromkeys(fields[level] for _, fields in rows))
        level_classes.append(tuple(order))
        level_maps.append(np.array([order.index(fields_of[name][level])
                                    for name in class_names], np.int64))
    return ClassHierarchy(tuple(class_names), tuple(level_classes), tuple(level_maps))


def read_hierarchy(path, class_names=None):
    """The `ClassHierarchy` of the file at `path` (see `parse_hierarchy`)."""
    with open(os.fspath(path)) as handle:
        return parse_hierarchy(handle.read(), source=os.fspath(path), class_names=class_names)


def get_hierarchy(spec, class_names=None):
    """A hierarchy by name ("cifar10", built in) or by file path."""
    if spec == "cifar10":
        return parse_hierarchy(CIFAR10_TEXT, source="the built-in CIFAR-10 hierarchy",
                               class_names=class_names or CIFAR10_CLASSES)
    if isinstance(spec, (str, os.PathLike)) and os.path.exists(spec):
        return read_hierarchy(spec, class_names)
    raise ValueError(f"A hierarchy is 'cifar10' or the path of a hierarchy file; got {spec!r}.")


CIFAR10 = get_hierarchy("cifar10")


def _cumulative(fractions):
    fractions = np.asarray(fractions, np.float64)
    if fractions.ndim != 1 or np.any(fractions < 0) or abs(fractions.sum() - 1.0) > 1e-6:
        raise ValueError(f"level fractions must be non-negative and sum to 1, got "
                         f"{fractions.tolist()}.")
    return np.cumsum(fractions)[:-1]


def known_levels(indices, fractions, seed):
    """The finest level whose label each labeled example keeps (NumPy).

    Example i keeps level l where u_i falls in the l-th slice of [0, 1) cut by
    the cumulative `fractions` (finest first), u_i a seeded hash of its dataset
    index: about fractions[l] of the labeled examples, the same ones in every
    step and every run of a seed, and a budget's split is nested in a larger
    one's. HIERMATCH's CIFAR-100 split is [6000, 2000, 2000] of 10,000
    labels, i.e. fractions (0.6, 0.2, 0.2).
    """
    with np.errstate(over="ignore"):
        keys = splitmix64(stream_base(seed, SALT_WITHHELD)
                          + np.asarray(indices, np.int64).astype(np.uint64))
    uniform = (keys >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return np.searchsorted(_cumulative(fractions), uniform, side="right").astype(np.int64)


def known_levels_tf(indices, fractions, seed):
    """`known_levels` in graph ops (int64 [b]), bit for bit the NumPy rule."""
    base = tf.constant(stream_base(seed, SALT_WITHHELD), tf.uint64)
    keys = splitmix64_tf(base + tf.bitcast(tf.cast(indices, tf.int64), tf.uint64))
    uniform = (tf.cast(tf.bitwise.right_shift(keys, tf.constant(11, tf.uint64)), tf.float64)
               / float(1 << 53))
    bounds = tf.constant(_cumulative(fractions), tf.float64)
    return tf.cast(tf.searchsorted(bounds[None, :], uniform[None, :], side="right")[0], tf.int64)
