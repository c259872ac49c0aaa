"""Synthetic images with a known object: a bright disc on a noisy grey background."""

import numpy as np


def blob_images(batch_size=4, size=32, radius=6, noise=0.05, seed=0):
    """(images float32 [B, size, size, 3] in [0, 1], discs float32 [B, size, size] of 0/1)."""
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[:size, :size]
    images = np.empty([batch_size, size, size, 3], np.float32)
    discs = np.zeros([batch_size, size, size], np.float32)
    for image, disc in zip(images, discs):
        centre_row, centre_column = rng.integers(radius + 2, size - radius - 2, 2)
        disc[:] = (rows - centre_row) ** 2 + (columns - centre_column) ** 2 <= radius**2
        grey = 0.3 + noise * rng.standard_normal([size, size])
        image[:] = np.clip(np.where(disc > 0, 0.9, grey), 0.0, 1.0)[..., None]
    return images, discs
