"""Pure loss functions: tensors in, scalar out; no variables, no collectives."""

from keras_ssl.losses.info_nce import info_nce_loss
from keras_ssl.losses.interclr import inter_image_nce_loss
from keras_ssl.losses.mean_shift import mean_shift_loss
from keras_ssl.losses.non_parametric_softmax import non_parametric_softmax_loss
from keras_ssl.losses.nt_xent import nt_xent_loss
from keras_ssl.losses.regression import normalized_regression_loss
from keras_ssl.losses.swapped_prediction import (soft_target_cross_entropy,
                                                 swapped_prediction_loss)
