"""Label selection: which training images to label, chosen from features without labels.

`select_usl` is USL (Wang et al., ECCV 2022): k-means into the budget, kNN
density, and a regulariser that spreads the picks. `select_uslt` is its
trained variant USL-T: cluster heads learned with a local (neighbour) and a
global (confident self-labelling) loss, one confident pick per cluster.
Both return dataset indices for `keras_ssl.data.write_label_indices`, which
`--label_indices=FILE` reads back.
"""

from keras_ssl.selection.density import knn_distances, mean_knn_distance
from keras_ssl.selection.regularized_picks import (pick_per_cluster, regularized_picks,
                                                   regularizer_update)
from keras_ssl.selection.usl import OFFICIAL_SETTINGS, USLSelection, select_usl, usl_kmeans
from keras_ssl.selection.uslt import USLT, USLTSelection, select_uslt, uslt_picks
from keras_ssl.selection.uslt_data import neighbor_table, scan_strong_view, uslt_dataset
from keras_ssl.selection.uslt_losses import sharpen, uslt_global_loss, uslt_local_loss

__all__ = ["OFFICIAL_SETTINGS", "USLSelection", "USLT", "USLTSelection", "knn_distances",
           "mean_knn_distance", "neighbor_table", "pick_per_cluster", "regularized_picks",
           "regularizer_update", "scan_strong_view", "select_usl", "select_uslt", "sharpen",
           "usl_kmeans", "uslt_dataset", "uslt_global_loss", "uslt_local_loss", "uslt_picks"]
