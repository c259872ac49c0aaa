"""The random-weights level of the CPU protocol: kNN on an untrained backbone.

A method's kNN accuracy means something only next to what the same backbone
scores before any training: the convolutions of a random ResNet already
separate CIFAR-10 classes somewhat. published-results.md gives 28.8% for the
balanced protocol; this measures it here, per seed (the level depends on the
random initialisation), for the balanced and the long-tail variants, whose
banks differ (10,000 images against 2,478), and for the balanced one with
the residual branches zeroed at the start (`zero_init_residual`, MIRA's
initialisation), which starts from a different level.
"""

import keras

from keras_ssl import backbones, evaluation
from keras_ssl import data as ssl_data
from keras_ssl.training import load_training_data


def measure_floor(data, *, train_per_class, imbalance_ratio, seed, image_size=32,
                  backbone="resnet18", width_multiplier=0.25, zero_init_residual=False,
                  k=200, temperature=0.1):
    """kNN top-1 of a randomly initialised backbone, as the protocol evaluates it."""
    keras.utils.set_random_seed(seed)
    source, train, _ = load_training_data(data, image_size=image_size,
                                          train_per_class=train_per_class,
                                          imbalance_ratio=imbalance_ratio)
    encoder = backbones.get(backbone, image_size=image_size,
                            width_multiplier=width_multiplier,
                            zero_init_residual=zero_init_residual)

    def features(split):
        return evaluation.extract_features(
            encoder, ssl_data.eval_dataset(split, batch_size=512, image_size=image_size))

    bank, bank_labels = features(train)
    queries, query_labels = features(source.test)
    knn = evaluation.knn_accuracy(bank, bank_labels, queries, query_labels,
                                  num_classes=source.num_classes, k=k,
                                  temperature=temperature)
    return {"seed": seed, "bank_images": len(train), "knn_top1": knn["top1"]}
