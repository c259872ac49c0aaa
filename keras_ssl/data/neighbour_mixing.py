"""The pipeline stage that pastes each anchor's neighbour into its query view (CLIM).

`train_dataset(..., neighbours=NeighbourMixing(...))` runs it: for every batch
of epoch e, after the table is ready for e (`NeighbourTable.lookup`),

1. `add_neighbours`: one neighbour index per row is drawn from the table and
   the neighbour's image is read by index, with the reader that reads the
   anchors (the split's in-memory array, or its files);
2. `mix`: after the method's views are made, the neighbour image gets a view
   of its own (the query view's settings, its own random draws) and a CutMix
   box of it is pasted into the anchor's query view
   (`keras_ssl.augment.cutmix`).

The element then also carries the mixed view (appended after the recipe's
views), "neighbour_index" (int64 [b]), "mix_ratio" (float32 [b], the exact
share of the mixed view's pixels that come from the anchor; 1 where the
neighbour is the anchor itself, which is then left unmixed) and, when
asked for, "neighbour_view" (the neighbour's whole view, before the paste).

All draws are stateless, from the batch's augmentation seed folded with the
stream numbers below, so the same seed gives the same neighbours, boxes and
neighbour views in every run.
"""

import dataclasses

import tensorflow as tf

from keras_ssl.augment.cutmix import cutmix
from keras_ssl.augment.views import ViewConfig
from keras_ssl.data.neighbour_table import NeighbourTable

# Fold-in streams of the batch seed. View recipes fold in their view index
# (0, 1, ...), so these stay far from any recipe's.
_LOOKUP_STREAM, _NEIGHBOUR_VIEW_STREAM, _BOX_STREAM = 0x434C01, 0x434C02, 0x434C03


@dataclasses.dataclass(frozen=True, eq=False)
class NeighbourMixing:
    """What `train_dataset` needs to mix each anchor's query view with a table neighbour.

    Args:
        table: the `NeighbourTable` (a method's state, e.g. `CLIM.neighbour_table`).
        view: the `ViewConfig` the neighbour images are augmented with (the
            query view's), which also fixes the mixed view's size.
        mix_view: index of the recipe view the neighbour is pasted into.
        alpha: CutMix's lambda ~ Beta(alpha, alpha) (1.0: uniform).
        keep_neighbour_view: also hand the neighbour's view on, as
            "neighbour_view" (one more view per step to the model: only for
            a method that encodes it).

    Example:
    >>> mixing = model.neighbour_mixing(recipe)  # a CLIM model and its view recipe
    >>> dataset = train_dataset(split, batch_size=256, view_fn=recipe, seed=0,
    ...                         neighbours=mixing)
    """

    table: NeighbourTable
    view: ViewConfig
    mix_view: int = 0
    alpha: float = 1.0
    keep_neighbour_view: bool = False

    def check_split(self, num_examples):
        """Raises unless the table has one row per example of the split."""
        if self.table.size != num_examples:
            raise ValueError(f"The neighbour table has {self.table.size} rows but the "
                             f"training split {num_examples} examples.")

    def add_neighbours(self, batch, epoch, read_images):
        """The batch plus "neighbour_index" and "neighbour_images" (uint8, as "images").

        Args:
            batch: a pipeline batch with "index" and "seed".
            epoch: the batch's epoch (the lookup waits for its table).
            read_images: indices [b] -> {"images": uint8 [b, H, W, 3], ...}.
        """
        seed = tf.random.experimental.stateless_fold_in(batch["seed"], _LOOKUP_STREAM)
        neighbour_index = self.table.lookup(batch["index"], seed, epoch=epoch)
        return {**batch, "neighbour_index": neighbour_index,
                "neighbour_images": read_images(neighbour_index)["images"]}

    def mix(self, element, batch):
        """The element with the mixed view appended, "neighbour_index" and "mix_ratio"."""
        seed = batch["seed"]
        neighbour_images = tf.cast(batch["neighbour_images"], tf.float32) * (1.0 / 255.0)
        neighbour_views = self.view.apply(
            neighbour_images,
            tf.random.experimental.stateless_fold_in(seed, _NEIGHBOUR_VIEW_STREAM))
        views = tuple(element["views"])
        mixed, mix_ratio = cutmix(
            views[self.mix_view], neighbour_views,
            tf.random.experimental.stateless_fold_in(seed, _BOX_STREAM), alpha=self.alpha,
            unmixed=tf.equal(batch["neighbour_index"], batch["index"]))
        mixed_element = {**element, "views": views + (mixed,),
                         "neighbour_index": batch["neighbour_index"], "mix_ratio": mix_ratio}
        if self.keep_neighbour_view:
            mixed_element["neighbour_view"] = neighbour_views
        return mixed_element
