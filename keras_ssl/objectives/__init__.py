"""Objective add-ons: layers that own a head and add a weighted loss term to any method.

A method takes them as `objectives=[...]`; `Method.train_step` calls each as
`objective(outputs, training=True) -> (weighted_loss, logs)` on the method's
`ViewOutputs`, and tracks the names in the objective's `log_names`.
"""

from keras_ssl.objectives.cld import CLD, NormLinear, cld_loss, group_head, normalized_head

__all__ = ["CLD", "NormLinear", "cld_loss", "group_head", "normalized_head"]
