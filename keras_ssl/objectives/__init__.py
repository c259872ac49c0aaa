"""Objective add-ons: layers that own a head and add a weighted loss term to any method.

A method takes them as `objectives=[...]`; `Method.train_step` calls each as
`objective(outputs, training=True) -> (weighted_loss, logs)` on the method's
family outputs (`keras_ssl.methods.outputs`), and tracks the names in the objective's `log_names`.
"""

from keras_ssl.objectives.cld import CLD, NormLinear, cld_loss, group_head, normalized_head
from keras_ssl.objectives.probe import OnlineLinearProbe

__all__ = ["CLD", "NormLinear", "OnlineLinearProbe", "cld_loss", "group_head",
           "normalized_head"]
