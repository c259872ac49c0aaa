"""The clustering figures of a deep-clustering run: its E-step labels against the classes.

Deep-clustering methods (NCC / ProPos) are judged by how well their own
pseudo-labels, the k-means labels of their E-step, match the classes: NMI,
ARI and the accuracy under the best cluster-to-class matching. A method
offers its labels through a `cluster_assignments` property (NumPy int [N]
in dataset-index order, or None before its first E-step); methods without
one, or without labels yet, add nothing to a run's results.

ProPos reports the labels of the E-step after the last epoch
(Hzzone/ProPos `models/basic_template.py`: `fit` runs `psedo_labeling`, which
logs NMI / ACC / ARI, after every `reassign`-th epoch, the last included), so
the report first runs the feature pass the method would want before the
epoch after the last.
"""

import numpy as np

from keras_ssl.evaluation.clustering import assignment_metrics

RESULT_KEYS = ("nmi", "ari", "cluster_acc")


def clustering_report(model, feature_pass, labels, *, epochs):
    """{nmi, ari, cluster_acc} of the method's final E-step labels, or {} without them.

    Args:
        model: the trained method.
        feature_pass: the run's `EpochFeaturePass` (every worker must call
            this: the pass is a distributed computation).
        labels: int array [N] of the training split's classes, in
            dataset-index order; -1 where unknown.
        epochs: the run's number of epochs; the pass runs if the method wants
            its features before that (0-based) epoch, i.e. after the last.

    Returns:
        {} when the method has no E-step labels; otherwise the three keys of
        `RESULT_KEYS`, None when no training label is known, else Python
        floats over the labelled examples.
    """
    if getattr(model, "cluster_assignments", None) is None:
        return {}
    # A run resumed past its last epoch never ran fit, which sets the model.
    feature_pass.set_model(model)
    feature_pass.on_epoch_begin(epochs)
    labels = np.asarray(labels).reshape(-1)
    known = labels >= 0
    if not known.any():
        return dict.fromkeys(RESULT_KEYS)
    scores = assignment_metrics(labels[known], np.asarray(model.cluster_assignments)[known])
    return {"nmi": scores["nmi"], "ari": scores["ari"], "cluster_acc": scores["accuracy"]}
