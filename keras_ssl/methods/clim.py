"""CLIM: centre-wise local image mixture on MoCo v2 (Li, Zhang, Xiong; BMVC 2021)."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Optional

import tensorflow as tf

from keras_ssl.data.neighbour_mixing import NeighbourMixing
from keras_ssl.data.neighbour_table import NeighbourTable, NeighbourTableRefresh
from keras_ssl.layers import IndexedBank
from keras_ssl.losses.image_mixture import image_mixture_nce_loss
from keras_ssl.methods.contract import Batch
from keras_ssl.methods.moco import MoCo
from keras_ssl.methods.outputs import ContrastiveOutputs


@dataclasses.dataclass(frozen=True)
class MixedBatch(Batch):
    """A `Batch` whose last view mixes each anchor with a neighbour (the pipeline's
    `keras_ssl.data.neighbour_mixing` stage).

    Attributes:
        neighbour_index: int64 [B] dataset index of each row's neighbour
            (the row's own index where it had none), or None without mixing.
        mix_ratio: float32 [B] share of the mixed view's pixels from the
            anchor, or None without mixing.
        neighbour_view: [B, h, w, 3] the neighbour's view before the paste,
            or None.
    """

    neighbour_index: Optional[tf.Tensor] = None
    mix_ratio: Optional[tf.Tensor] = None
    neighbour_view: Optional[tf.Tensor] = None

    @classmethod
    def from_element(cls, element):
        if isinstance(element, cls):
            return element
        batch = Batch.from_element(element)
        fields = {field.name: getattr(batch, field.name) for field in dataclasses.fields(Batch)}
        if isinstance(element, dict) and element.get("mix_ratio") is not None:
            fields["neighbour_index"] = tf.cast(element["neighbour_index"], tf.int64)
            fields["mix_ratio"] = tf.cast(element["mix_ratio"], tf.float32)
            fields["neighbour_view"] = element.get("neighbour_view")
        return cls(**fields)


@dataclasses.dataclass(frozen=True)
class MixtureOutputs(ContrastiveOutputs):
    """MoCo's outputs plus the mixed query (None when the batch was not mixed).

    Attributes:
        mixed_query: [B, D] projection of the mixed view.
        partner_keys: [B, D] the neighbours' positives (unit-norm).
        mix_ratio: [B] the anchor's share of each mixed view.
    """

    mixed_query: Optional[tf.Tensor] = None
    partner_keys: Optional[tf.Tensor] = None
    mix_ratio: Optional[tf.Tensor] = None


class CLIM(MoCo):
    """MoCo v2 plus a mixture of each anchor with a centre-wise local neighbour.

    Paper: Li, Zhang, Xiong, "Center-wise Local Image Mixture For Contrastive
    Representation Learning", BMVC 2021 (arXiv 2011.02697). No official code
    is public (`wusize/CLIM` is an unrelated method), and only the abstract
    could be read: this is a RECONSTRUCTION of the algorithm sketched in
    shared/reference/methods-a.md section 7 (marked unverified there) and
    methods-c.md section 7. Run results should be labelled "CLIM-like".

    What the abstract fixes: positives from other images, chosen among an
    anchor's local (k-NN) neighbours that lie closer to their cluster centre
    than the anchor ("centre-wise local selection"); the chosen images enter
    through an image mixture (a smoothing regulariser); multi-resolution
    augmentation; MoCo v2 as the base.

    How it runs here:

    * State: MoCo's (key encoder, queue) plus a memory bank of the
      normalised EMA keys, one row per example, replaced at every visit
      (`IndexedBank`, momentum 0, as InterCLR's bank), and a
      `NeighbourTable` of up to `num_neighbours` candidates per example.
    * Epoch hook (`refresh_neighbours`, run by `NeighbourTableRefresh`,
      which `fit` adds): before every epoch from `mixing_start_epoch` on,
      spherical k-means of the bank into `num_clusters` clusters and the
      `num_neighbours` nearest bank rows of every anchor; the candidates are
      those in the anchor's cluster with a higher cosine to its centre
      (`keras_ssl.data.neighbour_table.centre_wise_neighbours`). The table
      is then marked ready, which releases that epoch's batches.
    * Pipeline (`neighbour_mixing`, given to `train_dataset(neighbours=...)`):
      each batch draws one candidate per anchor, reads its image by index,
      gives it a view with the query's settings and its own random draws,
      and pastes a CutMix box of it into the anchor's query view. An anchor
      without candidates is its own neighbour and stays unmixed (lambda 1).
    * Loss: MoCo's InfoNCE of the query (view 0) against the key (view 1)
      and the queue, averaged over the query at every resolution; plus
      `mix_loss_weight` x [lambda l(q_mix, k_anchor) + (1 - lambda)
      l(q_mix, k_neighbour)] with the queue as negatives
      (`keras_ssl.losses.image_mixture.image_mixture_nce_loss`).
    * After the step: MoCo's key-encoder move and enqueue, then the keys are
      written into the bank (gathered over replicas).

    Guessed choices (the paper's method section could not be read):

    * k (`num_neighbours`, 10) and the number of clusters (`num_clusters`):
      not in the notes; the configs scale them (keras_ssl.configs.clim).
    * Lambda ~ Beta(1, 1) = U(0, 1) (`mix_alpha`), CutMix's own default,
      with lambda recomputed from the clipped box.
    * The mixed image is a query: it is the neighbour pasted into the
      anchor's query view (in view space, after both are augmented), and
      the keys stay unmixed.
    * The second positive k_neighbour is, by default, the neighbour's
      memory-bank row (its EMA key from its last visit, at most an epoch
      old): no extra key-encoder pass. `neighbour_key="fresh"` takes instead
      the key encoder's key of the neighbour's view in this step (the view
      whose box is pasted), one more key-encoder pass. Where the neighbour
      is the anchor, the anchor's own key is used, so the term is plain
      InfoNCE.
    * One neighbour per anchor and step, drawn uniformly from its candidates.
    * The mixture term is added to MoCo's loss with weight 1.
    * Multi-resolution: the query view resized to the recipe's extra sides
      (`keras_ssl.augment.recipes.multi_resolution_views`; 24 px beside
      32 px on CIFAR, 192/160/128/96 beside 224 on ImageNet, the latter
      recalled unverified by the notes), each an extra query against the
      anchor's key, averaged with the full-size query's term as MoCo averages
      its queries.
    * Mixing starts at 0-based epoch `mixing_start_epoch` (1: the notes'
      "from epoch 2 on", so the first clustering sees a bank of trained
      keys); before it every anchor is its own neighbour.
    * The k-means is one k-means++ restart of up to `kmeans_iterations`
      Lloyd steps, seeded with `seed + epoch`.

    Args:
        encoder: backbone (query encoder; the key encoder is its EMA copy).
        num_examples: training-set size N (bank and table rows); None takes
            it from the run context.
        projection_dim: key width (128); also the bank's row width.
        num_neighbours: k of the k-NN search, and the most candidates kept.
        num_clusters: K of the bank's k-means.
        mixing_start_epoch: first 0-based epoch whose batches are mixed.
        mix_alpha: CutMix's Beta(alpha, alpha) parameter.
        mix_loss_weight: weight of the mixture term.
        kmeans_iterations: most Lloyd iterations of each refresh.
        neighbour_key: the neighbour's positive, "bank" (its memory-bank
            row) or "fresh" (the key of its view in this step).
        seed: seeds of the queue, bank and k-means.
        **kwargs: `MoCo`'s arguments (temperature, queue_size, momentum,
            projection_hidden_dim, shuffle_bn, ...; not `symmetric` or
            `shared_key_view`) and the base's.

    Example:
    >>> from keras_ssl.backbones import tiny_backbone
    >>> model = CLIM(tiny_backbone(), num_examples=64, projection_dim=8, queue_size=16,
    ...              num_neighbours=4, num_clusters=4)
    >>> tuple(model.neighbour_table.candidates.shape), tuple(model.memory.rows.shape)
    ((64, 4), (64, 8))
    """

    recipe_name = "multi_resolution"
    mixed_image_sizes = True
    # Its forward builds its own outputs, without BG_Swaps' extra negative.
    accepts_extra_negatives = False
    log_names = ("mix_loss", "mixed_share")
    state_attributes = ("memory", "neighbour_table")

    def __init__(self, encoder, *, num_examples=None, projection_dim=128, num_neighbours=10,
                 num_clusters=100, mixing_start_epoch=1, mix_alpha=1.0, mix_loss_weight=1.0,
                 kmeans_iterations=100, neighbour_key="bank", seed=0, **kwargs):
        super().__init__(encoder, projection_dim=projection_dim, seed=seed, **kwargs)
        if self.symmetric or self.shared_key_view is not None:
            raise ValueError("CLIM's queries are the query view, its resized copies and the "
                             "mixed view; symmetric and shared_key_view do not apply.")
        num_examples = num_examples or self.run.num_examples
        if not num_examples:
            raise ValueError("CLIM keeps a bank row and a table row per training example: "
                             "give num_examples or run=RunContext(num_examples=...).")
        self.num_examples = int(num_examples)
        self.num_clusters = int(num_clusters)
        self.mixing_start_epoch = int(mixing_start_epoch)
        self.mix_alpha = float(mix_alpha)
        self.mix_loss_weight = float(mix_loss_weight)
        self.kmeans_iterations = int(kmeans_iterations)
        if neighbour_key not in ("bank", "fresh"):
            raise ValueError(f'neighbour_key must be "bank" or "fresh", got {neighbour_key!r}.')
        self.neighbour_key = neighbour_key
        self.memory = IndexedBank(self.num_examples, projection_dim, momentum=0.0, seed=seed,
                                  name="memory")
        self.neighbour_table = NeighbourTable(self.num_examples, num_neighbours,
                                              name="neighbour_table")
        self.built = True

    # ---- the pipeline's and the epoch hook's side --------------------------------
    def neighbour_mixing(self, recipe):
        """The pipeline stage of `train_dataset(neighbours=...)` for view recipe `recipe`.

        The neighbours are pasted into view 0 (the query) and augmented with
        its settings; their views come along for `neighbour_key="fresh"`.
        """
        return NeighbourMixing(self.neighbour_table, recipe.views[0], mix_view=0,
                               alpha=self.mix_alpha,
                               keep_neighbour_view=self.neighbour_key == "fresh")

    def refresh_neighbours(self, epoch):
        """The epoch hook: re-selects the neighbours from the bank when due, marks the table ready.

        Args:
            epoch: the 0-based epoch about to start (a Python int).

        Returns:
            The refresh's figures (`NeighbourTable.refresh`), or None when
            the epoch is before `mixing_start_epoch`.
        """
        figures = None
        if epoch >= self.mixing_start_epoch:
            figures = self.neighbour_table.refresh(
                self.memory.read(), num_clusters=self.num_clusters, seed=self.seed + epoch,
                kmeans_iterations=self.kmeans_iterations)
        self.neighbour_table.mark_ready(epoch)
        return figures

    def fit(self, *args, callbacks=None, initial_epoch=0, **kwargs):
        """`keras.Model.fit`, with a `NeighbourTableRefresh` unless one is given.

        The first epoch's hook runs before Keras starts (see
        `NeighbourTableRefresh.before_fit`).
        """
        callbacks = list(callbacks or ())
        refresh = next((callback for callback in callbacks
                        if getattr(callback, "refreshes_neighbour_table", False)), None)
        if refresh is None:
            refresh = NeighbourTableRefresh(self.neighbour_table)
            callbacks.append(refresh)
        refresh.before_fit(self, initial_epoch)
        try:
            return super().fit(*args, callbacks=callbacks, initial_epoch=initial_epoch,
                               **kwargs)
        finally:
            # Also when fit fails: pipeline threads waiting for an epoch that
            # will not start are let go, so the iterator can be torn down.
            self.neighbour_table.release()

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras (3.x, TensorFlow trainer) reads one batch through a throwaway
        # iterator under a distribution strategy to build what is unbuilt, and
        # drops that iterator at once; if its prefetch had already run ahead
        # into the next epoch, whose lookups wait for the table, tearing it
        # down would wait for them. A built model and optimizer need no batch.
        optimizer = getattr(self, "optimizer", None)
        if (all(layer.built for layer in self._flatten_layers())
                and optimizer is not None and optimizer.built):
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    # ---- the step ----------------------------------------------------------------
    def train_step(self, data):
        # The base reads views, index and label; the mixing's fields come along.
        return super().train_step(MixedBatch.from_element(data))

    def forward(self, batch, ctx):
        views, training = batch.views, ctx.training
        mixed = getattr(batch, "mix_ratio", None) is not None
        # Recipe views: query, key, resized copies of the query; the mixing
        # stage appends the mixed view last.
        resized = views[2:-1] if mixed else views[2:]
        query_views = (views[0], *resized) + ((views[-1],) if mixed else ())
        features = self.encode_views(query_views, training)
        projections = tuple(self.projector(f, training=training) for f in features)
        key = self._keys(views[1], ctx)
        num_queries = 1 + len(resized)
        outputs = MixtureOutputs(features=features, queries=projections[:num_queries],
                                 keys=(key,) * num_queries, index=batch.index,
                                 label=batch.label)
        if not mixed:
            # Said once per trace: such a run is MoCo with multi-resolution views.
            warnings.warn("CLIM got batches without a mixed view, so it trains without "
                          "the mixture: build the input with train_dataset(..., "
                          "neighbours=model.neighbour_mixing(recipe)).", stacklevel=2)
            return outputs
        key = tf.math.l2_normalize(tf.cast(key, tf.float32), axis=1)
        if self.neighbour_key == "fresh":
            if batch.neighbour_view is None:
                raise ValueError('neighbour_key="fresh" needs the pipeline\'s "neighbour_view".')
            partners = tf.math.l2_normalize(
                tf.cast(self._keys(batch.neighbour_view, ctx), tf.float32), axis=1)
        else:
            partners = tf.gather(self.memory.read(), batch.neighbour_index)
        unmixed = tf.equal(batch.neighbour_index, batch.index)[:, None]
        return dataclasses.replace(outputs, mixed_query=projections[-1],
                                   partner_keys=tf.where(unmixed, key, partners),
                                   mix_ratio=batch.mix_ratio)

    def loss(self, outputs, ctx):
        loss, logs = super().loss(outputs, ctx)
        if outputs.mixed_query is None:
            return loss, logs
        mix_loss = image_mixture_nce_loss(
            outputs.mixed_query, outputs.keys[0], outputs.partner_keys, outputs.mix_ratio,
            self.queue.read(), temperature=self.temperature)
        logs = {**logs, "mix_loss": mix_loss,
                "mixed_share": tf.reduce_mean(1.0 - outputs.mix_ratio)}
        return loss + self.mix_loss_weight * mix_loss, logs

    def after_apply(self, outputs, ctx):
        super().after_apply(outputs, ctx)  # the key encoder, then the queue
        keys = tf.math.l2_normalize(tf.cast(outputs.keys[0], tf.float32), axis=1)
        self.memory.write(outputs.index, keys)  # gathers index and keys itself
