"""A Keras callback that reports weighted-kNN accuracy of the encoder during training."""

import keras

from keras_ssl.evaluation.features import extract_features
from keras_ssl.evaluation.knn import knn_accuracy


class KnnMonitor(keras.callbacks.Callback):
    """Evaluates the encoder with the weighted kNN protocol while a method trains.

    Both datasets are encoded afresh at each evaluation with the encoder in
    inference mode (the "recomputed memory" variant of InstDisc's monitor), and
    the query set is classified against the bank with `knn_accuracy`.

    The top-1 fraction is written as `logs["knn_top1"]` into the epoch logs. Keras
    appends its History and progress bar after user callbacks, so both show the
    value; put a `TensorBoard` callback *after* this one in the list so it sees it too.
    Epochs in `history` count completed epochs (1 after the first), as the
    progress bar does.

    Args:
        encoder_fn: the encoder (a `keras.Model`), or a zero-argument callable
            returning it, resolved at each evaluation, e.g. `lambda: method.encoder`.
            None uses `self.model.encoder` of the model being trained.
        bank_dataset: evaluation dataset of dicts ("image", "label") for the bank,
            typically the training split with the test-time transform.
        query_dataset: evaluation dataset of dicts for the queries (the test split).
        num_classes: number of classes.
        every_epochs: evaluate after every this many epochs; 0 evaluates only
            once, after the last epoch. The last epoch is always evaluated.
        k: neighbours per query.
        temperature: vote temperature.

    Attributes:
        last_result: dict(top1, top5) of the latest evaluation, or None.
        history: list of (epoch, top1) pairs, one per evaluation.

    Example:
        >>> monitor = KnnMonitor(None, bank_ds, test_ds, num_classes=10, every_epochs=10)
        >>> method.fit(train_ds, epochs=200, callbacks=[monitor, keras.callbacks.TensorBoard(d)])
    """

    def __init__(
        self,
        encoder_fn,
        bank_dataset,
        query_dataset,
        num_classes,
        every_epochs=0,
        k=200,
        temperature=0.1,
    ):
        super().__init__()
        if every_epochs < 0:
            raise ValueError(f"every_epochs must be >= 0, got {every_epochs}.")
        self.encoder_fn = encoder_fn
        self.bank_dataset = bank_dataset
        self.query_dataset = query_dataset
        self.num_classes = num_classes
        self.every_epochs = every_epochs
        self.k = k
        self.temperature = temperature
        self.last_result = None
        self.history = []
        self._last_epoch = None  # completed epochs at the latest on_epoch_end
        self._last_evaluated_epoch = None

    def _resolve_encoder(self):
        if self.encoder_fn is None:
            return self.model.encoder
        # A Keras model is itself callable, so test for it before calling.
        if isinstance(self.encoder_fn, keras.layers.Layer):
            return self.encoder_fn
        return self.encoder_fn()

    def evaluate(self):
        """Runs one kNN evaluation now and returns dict(top1, top5)."""
        encoder = self._resolve_encoder()
        bank_features, bank_labels = extract_features(encoder, self.bank_dataset)
        query_features, query_labels = extract_features(encoder, self.query_dataset)
        return knn_accuracy(
            bank_features,
            bank_labels,
            query_features,
            query_labels,
            num_classes=self.num_classes,
            k=self.k,
            temperature=self.temperature,
        )

    def _record(self, epoch, logs):
        self.last_result = self.evaluate()
        self.history.append((epoch, self.last_result["top1"]))
        self._last_evaluated_epoch = epoch
        if logs is not None:
            logs["knn_top1"] = self.last_result["top1"]

    def _is_last_epoch(self, epoch):
        # `epoch` counts completed epochs; params["epochs"] is the fit target.
        planned = (self.params or {}).get("epochs")
        stopping = getattr(self.model, "stop_training", False)
        return stopping or (planned is not None and epoch >= planned)

    def on_train_begin(self, logs=None):
        # A callback object may serve several fit calls; `history` accumulates
        # across them but the end-of-training bookkeeping starts afresh.
        self._last_epoch = None
        self._last_evaluated_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        completed = epoch + 1  # Keras passes a 0-based index.
        self._last_epoch = completed
        periodic = self.every_epochs > 0 and completed % self.every_epochs == 0
        if periodic or self._is_last_epoch(completed):
            self._record(completed, logs)

    def on_train_end(self, logs=None):
        # Catches runs stopped early by a callback that ran after this one
        # (EarlyStopping, TerminateOnNaN), whose last epoch was not evaluated.
        if self._last_epoch is not None and self._last_evaluated_epoch != self._last_epoch:
            self._record(self._last_epoch, logs)
