"""Batched, stateless tf.data augmentations and the view recipes of SSL methods.

Ops take float32 images in [0, 1] (a batch [B, H, W, 3] or one image [H, W, 3])
and an int32 seed of shape [2]; recipes take a uint8 batch and return a tuple of
views. See `keras_ssl.augment.common` for the conventions.
"""

from keras_ssl.augment.background_views import BackgroundConfig
from keras_ssl.augment.blur import gaussian_blur
from keras_ssl.augment.color import color_jitter
from keras_ssl.augment.color import random_grayscale
from keras_ssl.augment.color import solarize
from keras_ssl.augment.erasing import random_erasing
from keras_ssl.augment.geometry import random_flip
from keras_ssl.augment.geometry import random_resized_crop
from keras_ssl.augment.randaugment import WeakStrongRecipe
from keras_ssl.augment.randaugment import cutout
from keras_ssl.augment.randaugment import flip_and_shift
from keras_ssl.augment.randaugment import rand_augment
from keras_ssl.augment.recipes import RECIPES
from keras_ssl.augment.recipes import byol_views
from keras_ssl.augment.recipes import fixmatch_views
from keras_ssl.augment.recipes import get_recipe
from keras_ssl.augment.recipes import hiermatch_views
from keras_ssl.augment.recipes import mira_views
from keras_ssl.augment.recipes import mixmatch_views
from keras_ssl.augment.recipes import moco_v2_views
from keras_ssl.augment.recipes import multi_crop_views
from keras_ssl.augment.recipes import npid_views
from keras_ssl.augment.recipes import simclr_views
from keras_ssl.augment.views import ViewConfig
from keras_ssl.augment.views import ViewRecipe
