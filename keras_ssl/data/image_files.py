"""Finding image files in a folder tree and a cheap check that a file is an image.

Folders are listed with `tf.io.gfile`, so a tree on any TensorFlow file system (`gs://`,
`file://`, ...) lists as a local one does.
"""

from __future__ import annotations

import os

import tensorflow as tf

# Formats both PIL and tf.io.decode_image read, so the in-memory and streamed paths agree.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")

# Leading bytes of each supported format. Checking them costs one small read per file,
# which is what lets the streamed path drop text files or empty files named `.jpg`
# before they reach `tf.io.decode_image` and stop training.
_MAGIC_HEADERS = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",  # PNG
    b"GIF87a",
    b"GIF89a",
    b"BM",  # BMP
)
_HEADER_BYTES = max(len(magic) for magic in _MAGIC_HEADERS)


def is_image_file(name: str) -> bool:
    """True when `name` has a supported image extension (case-insensitive)."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def has_image_header(path: str) -> bool:
    """Cheap validity check: the file is non-empty and starts with a known magic header.

    It does not catch truncated or corrupt image data; the streamed pipeline skips those
    at decode time.

    Args:
        path: the image file.
    """
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            header = f.read(_HEADER_BYTES)
    # A missing, unreadable or folder entry: local errors come as OSError, remote
    # file systems raise TensorFlow's errors.
    except (OSError, tf.errors.OpError):
        return False
    return header.startswith(_MAGIC_HEADERS)


def _visible(name: str) -> bool:
    # Hidden entries (.DS_Store, .ipynb_checkpoints, ._foo.jpg from macOS) are never data.
    return not name.startswith(".")


def _entries(directory: str) -> tuple[list[str], list[str]]:
    """(sub-folder names, image file names) of one folder, hidden entries left out.

    A name with an image extension is taken to be a file without asking the file system:
    on a bucket every `isdir` is a request, and an ImageNet class folder holds over a
    thousand images. Only other names are asked; some file systems mark a folder with a
    trailing '/', which answers without a request. (A folder named like an image, `x.jpg/`,
    is thus read as a file, found unreadable and skipped.)
    """
    folders, images = [], []
    for entry in tf.io.gfile.listdir(directory):
        name = entry.rstrip("/")
        if not _visible(name):
            continue
        if entry.endswith("/"):
            folders.append(name)
        elif is_image_file(name):
            images.append(name)
        elif tf.io.gfile.isdir(os.path.join(directory, name)):  # follows symlinks
            folders.append(name)
    return folders, images


def list_images(directory: str) -> list[str]:
    """Image files under `directory` (recursively), in sorted relative-path order.

    Args:
        directory: folder to walk.
    """
    found, pending = [], [directory]
    while pending:
        parent = pending.pop()
        folders, images = _entries(parent)
        found.extend(os.path.join(parent, name) for name in images)
        pending.extend(os.path.join(parent, name) for name in folders)
    # Sorting by path components (all paths share the `directory` prefix) gives one order
    # independent of the file system's listing order: a folder's files and sub-folders
    # interleave by name.
    return sorted(found, key=lambda p: p.split("/"))


def class_folders(directory: str) -> list[str]:
    """Sorted names of the visible sub-folders of `directory`; each one is a class."""
    folders, _ = _entries(directory)
    return sorted(folders)


def list_image_folder(directory: str) -> tuple[list[str], list[int], list[str]]:
    """Lists one split folder: class sub-folders give labels, loose images are unlabeled.

    A folder with sub-folders is labeled: class index = position of the sub-folder's name
    in sorted order, and loose files beside the sub-folders are ignored. A folder without
    sub-folders is unlabeled and every label is -1.

    Args:
        directory: the split folder.

    Returns:
        (paths, labels, class_names), paths in sorted order, class-major when labeled.
    """
    names = class_folders(directory)
    if not names:
        paths = list_images(directory)
        return paths, [-1] * len(paths), []
    paths, labels = [], []
    for index, name in enumerate(names):
        class_paths = list_images(os.path.join(directory, name))
        paths.extend(class_paths)
        labels.extend([index] * len(class_paths))
    return paths, labels, names
