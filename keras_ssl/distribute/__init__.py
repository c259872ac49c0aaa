"""Collectives and strategy construction."""

from keras_ssl.distribute.cross_replica import (all_gather, all_reduce_sum,
                                                global_offset, local_rows,
                                                num_replicas, replica_id,
                                                replicated_state_scope)
from keras_ssl.distribute.keras_compat import adapt_fit_to_multi_worker, check_keras_hooks
from keras_ssl.distribute.global_batch import on_global_batch
from keras_ssl.distribute.strategy import STRATEGIES, make_strategy, split_cpu
