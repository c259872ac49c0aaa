"""Stateful building blocks with fixed shapes: heads, prototypes, pseudo-labels, memory."""

from keras_ssl.layers.clustered_bank import ClusteredBank
from keras_ssl.layers.memory import IndexedBank, Memory, QueueContents, RingQueue
from keras_ssl.layers.memory_bank import IndexedMemoryBank, MemoryBankKMeans, Queue
from keras_ssl.layers.projection_head import mlp_head
from keras_ssl.layers.prototypes import Prototypes
from keras_ssl.layers.pseudo_labels import PseudoLabels
from keras_ssl.layers.sharded_classifier import ShardedClassifier
