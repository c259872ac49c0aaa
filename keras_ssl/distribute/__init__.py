"""Collectives and strategy construction."""

from keras_ssl.distribute.cross_replica import (all_gather, all_reduce_sum,
                                                global_offset, local_rows,
                                                num_replicas, replica_id,
                                                replicated_state_scope)
from keras_ssl.distribute.strategy import STRATEGIES, make_strategy, split_cpu
