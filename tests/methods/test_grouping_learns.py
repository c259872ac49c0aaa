"""The clustering methods find groups that are there.

Synthetic 8x8 images: ten random colour patterns, each image one of them plus
pixel noise, two noisy views per image. A method whose pseudo-labels carry
information pulls the views of one pattern onto the same prototypes, so the
student's most likely prototype tells the pattern apart (high NMI). A broken
target (wrong sign, swapped marginal, targets computed from the wrong crop)
leaves the prototypes unrelated to the patterns, or collapses them.

This is the counterpart of MIRA's CPU-protocol result: there it stays at
uniform predictions, and this shows the same code learns when the views of
an image agree strongly enough.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import normalized_mutual_info_score

from keras_ssl import methods
from keras_ssl.backbones import tiny_backbone

NUM_PATTERNS, NUM_IMAGES, SIZE, NOISE = 10, 2000, 8, 0.3
BATCH, EPOCHS = 128, 12
STEPS = EPOCHS * (NUM_IMAGES // BATCH)

CONFIGS = {
    "mira": dict(freeze_prototypes_steps=15, total_steps=STEPS),
    "swav": dict(freeze_prototypes_steps=15),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_prototypes_separate_noisy_copies_of_ten_patterns(name):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    patterns = rng.uniform(size=(NUM_PATTERNS, SIZE, SIZE, 3)).astype("float32")
    labels = rng.integers(0, NUM_PATTERNS, NUM_IMAGES)

    def noisy_copies():
        noise = NOISE * rng.standard_normal((NUM_IMAGES, SIZE, SIZE, 3))
        return np.clip(patterns[labels] + noise, 0.0, 1.0).astype("float32")

    model = methods.get(name, encoder=tiny_backbone(image_size=SIZE, width=16),
                        projection_hidden_dim=64, projection_dim=32, num_prototypes=30,
                        **CONFIGS[name])
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    # Built before fit: an optimizer that makes its variables in fit's trace
    # makes tf.function trace the step twice.
    model.optimizer.build(model.update_variables())

    def nmi():
        embeddings = tf.math.l2_normalize(model.projector(
            model.encoder(noisy_copies(), training=False), training=False), axis=1)
        best = tf.argmax(model.prototypes(embeddings), axis=1).numpy()
        return normalized_mutual_info_score(labels, best)

    before = nmi()
    for epoch in range(EPOCHS):
        dataset = tf.data.Dataset.from_tensor_slices(
            {"views": (noisy_copies(), noisy_copies()), "index": np.arange(NUM_IMAGES)})
        model.fit(dataset.shuffle(NUM_IMAGES, seed=epoch).batch(BATCH, drop_remainder=True),
                  epochs=1, verbose=0, shuffle=False)
    after = nmi()
    assert after > 0.75, (before, after)
    assert after > before + 0.3, (before, after)
