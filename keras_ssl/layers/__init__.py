"""Stateful building blocks with fixed shapes."""

from keras_ssl.layers.memory_bank import IndexedMemoryBank, Queue
from keras_ssl.layers.projection_head import mlp_head
from keras_ssl.layers.prototypes import Prototypes
