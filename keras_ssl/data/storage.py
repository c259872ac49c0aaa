"""Files on any TensorFlow file system: local paths and URLs such as `gs://bucket/data`.

Everything the library reads or writes (data folders and npz files, exports, mask caches,
plots, label index files) goes through `tf.io.gfile`, so a path may be a local one
(`/data/cifar10`, `~/runs/simclr`) or a URL of a file system TensorFlow knows: `gs://`
on Google Cloud, `file://` for the local disk, `ram://` in tests. `open`, `os.path.isdir`
or `os.makedirs` would see only the local disk, and `os.path.abspath` or `normpath` would
fold the `//` of a URL into `/` and turn it into a local path.

Example:
    >>> write_bytes("gs://bucket/run/notes.txt", b"hello")  # folders are created
    >>> read_bytes("gs://bucket/run/notes.txt")
    b'hello'
"""

from __future__ import annotations

import os

import tensorflow as tf

# Defined with the checks the binaries run before importing TensorFlow.
from keras_ssl.checkpoint_paths import URL_SEPARATOR, is_url  # noqa: F401  (used here, and re-exported)


def absolute(path) -> str:
    """`path` in one canonical spelling, so two spellings of a folder compare equal.

    A local path is expanded (`~`) and made absolute; a URL is already absolute and only
    loses trailing slashes (normalising it would fold its `//`).
    """
    path = os.fspath(path)
    if is_url(path):
        scheme, rest = path.split(URL_SEPARATOR, 1)
        return f"{scheme}{URL_SEPARATOR}{rest.rstrip('/')}"
    return os.path.abspath(os.path.expanduser(path))


def parent(path) -> str:
    """The folder holding `path` (`absolute` spelling)."""
    return os.path.dirname(absolute(path))


def is_within(path, folder) -> bool:
    """True when `path` is `folder` or lies below it (compared by their `absolute` spelling)."""
    path, folder = absolute(path), absolute(folder)
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def read_bytes(path) -> bytes:
    """The whole content of the file `path`.

    A local path is read with `open`: through gfile, decoding a CIFAR-size image
    folder took about a fifth longer.
    """
    path = os.fspath(path)
    if not is_url(path):
        with open(path, "rb") as file:
            return file.read()
    with tf.io.gfile.GFile(path, "rb") as file:
        return file.read()


def write_bytes(path, data: bytes, *, atomic: bool = False) -> None:
    """Writes `data` as the file `path`, creating its folder first.

    Args:
        path: the file.
        data: its content.
        atomic: write a temporary file beside it, then rename it over `path`, so that a
            process killed mid-write leaves the old file or none, never half a file (on
            object stores such as GCS a rename is a copy, still never a partial file).
    """
    path = os.fspath(path)
    tf.io.gfile.makedirs(parent(path))
    target = f"{path}.tmp-{os.getpid()}" if atomic else path
    with tf.io.gfile.GFile(target, "wb") as file:
        file.write(data)
    if atomic:
        tf.io.gfile.rename(target, path, overwrite=True)


def write_text(path, text: str) -> None:
    """Writes `text` as the UTF-8 file `path`, creating its folder first."""
    write_bytes(path, text.encode("utf-8"))


def file_signature(path) -> tuple[int, int]:
    """(size in bytes, modification time in ns) of the file `path`.

    Local paths use `os.stat`: TensorFlow's local file system reports modification times in
    whole seconds, which would miss a file rewritten with the same size within a second.
    """
    path = os.fspath(path)
    if not is_url(path):
        status = os.stat(path)
        return status.st_size, status.st_mtime_ns
    status = tf.io.gfile.stat(path)
    return status.length, status.mtime_nsec
