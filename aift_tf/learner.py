"""`ActiveLearner`: the state of an AIFT run and its two verbs, `query` and `teach`.

A learner holds M0 (the pre-trained starting weights), the current model M_t, the candidate pool, the
labeled set and the round number. `query(query_size)` scores the unlabeled pool with M_t and returns the
`query_size` most worthy candidates; `teach(ids, labels)` records the oracle's labels and fine-tunes according to the
learning strategy. `save`/`load` round-trip the whole state (labels, round, weights, optimizer slots,
RNG) so that a loop resumes after a crash exactly where it stopped.

Example:
>>> from aift_tf.store import open_store
>>> from aift_tf.learner import ActiveLearner
>>> store = open_store("pe.h5")
>>> learner = ActiveLearner(store, model_name="small_cnn", strategy="aift", seed=0)
>>> for _ in range(3):
...     ids, scores = learner.query(20)                 # a Query record; unpacks as (ids, scores)
...     learner.teach(ids, store.labels[ids])          # the oracle
>>> learner.evaluate("test")["auc"]
>>> learner.save("run/state")
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import time
import warnings
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from aift_tf import __version__
from aift_tf.errors import AiftError
from aift_tf import checkpoint
from aift_tf.finetune import (
    FineTuneConfig,
    check_learning,
    compile_model,
    fine_tune,
    learning_plan,
    reset_optimizer,
)
from aift_tf.checks import check_int
from aift_tf.selection import Strategy, as_strategy, select_batch

STATE_FORMAT = 1


@dataclasses.dataclass(frozen=True, eq=False)
class Query:
    """What :meth:`ActiveLearner.query` returns.

    Attributes:
        ids: int64 candidate ids chosen (most worthy first for top-b strategies).
        scores: float64 worth of each (for `random`, the uniform draws that ranked them; for
            `coreset`, the k-center distance at which each was picked, in pick order; for
            `aift+coreset`, their AIFT worth).
        probabilities: float32 `(len(ids), m, K)` patch probabilities of the chosen candidates under
            the current model when the strategy used them (else `None`).
        seconds: time spent choosing (scoring and selection).
        strategy: the `aift_tf.selection.Strategy` the query used (the learner's or the query's own).
        omega: the ω the query used (checked, a float >= 1).

    For backwards compatibility a `Query` behaves as the pair `(ids, scores)`: it unpacks
    (`ids, scores = learner.query(query_size)`), indexes (`q[0]` is `ids`, `q[1]` is `scores`) and has length 2.

    Example:
    >>> q = learner.query(10)
    >>> ids, scores = q          # same as q.ids, q.scores
    """

    ids: np.ndarray
    scores: np.ndarray
    probabilities: Optional[np.ndarray] = None
    seconds: float = 0.0
    strategy: Optional[Strategy] = None
    omega: Optional[float] = None

    def __iter__(self):
        return iter((self.ids, self.scores))

    def __getitem__(self, index):
        return (self.ids, self.scores)[index]

    def __len__(self) -> int:
        return 2


class _Checkpoint:
    """A saved M_t (compiled, optimizer slots restored) and its M0 weights: the `model` that
    :meth:`ActiveLearner.load` hands to the constructor (neither cloned nor re-compiled)."""

    def __init__(self, model, m0_weights):
        self.model = model
        self.m0_weights = m0_weights


class ActiveLearner:
    """Active, incremental fine-tuning over a candidate store.

    Args:
        store: an open `aift_tf.store.CandidateStore`.
        model: an optional Keras model to start from (M0). When `None`, M0 is built with
            `aift_tf.zoo.build_model(model_name, store.patch_shape, store.num_classes, weights, trainable)`.
        model_name, weights, trainable: zoo options used when `model` is None.
        strategy: selection strategy, a string parsed once here (or an `aift_tf.selection.Strategy`):
            `"random"`, `"entropy"`, `"diversity"`, `"entropy+diversity"` (each optionally `@ALPHA`),
            `"aift"` (= `entropy+diversity@0.25`), or a baseline (`"least-confidence"`, `"margin"`,
            `"mean-entropy"`). `learner.strategy` is the string (as given; the canonical string of a
            Strategy), `learner.parsed_strategy` the Strategy; assigning `learner.strategy` parses anew.
        learning: learning strategy, one of `aift_tf.finetune.LEARNING_STRATEGIES`.
        omega: randomization extension ω ≥ 1 (1 = plain top-b).
        finetune: a `FineTuneConfig` (or dict).
        seed: seeds queries (RNG saved with the state) and fine-tuning.
        pool_split: the store split to query from (default `"train"`).
        val_split: the split used for validation AUC / early stopping, if it has labels.
        predict_batch_size: patches per prediction batch.
        progress: optional callable `(stage, done, total)` for progress bars (runtime option).
        cache_trunk: `False` (default), `True` (trunk activations in memory) or a directory (an
            HDF5 side file there, keyed by store sha256 + trunk architecture + trunk weights, reused
            across runs). Valid only when the model's trainable policy is `"head"` or `"top"` and
            `finetune.augment` is off: the frozen trunk runs once per patch for the whole run, and
            rounds score and fine-tune only the trainable rest (see `aift_tf.trunk_cache`).
        distribute: `None`/`"none"`, `"mirrored"`, `"multi-worker"` or a `tf.distribute.Strategy`
            (runtime option); the model is built (or cloned) and compiled under its scope,
            fine-tuning and scoring run through it (see `aift_tf.distribute`, docs/distributed.md).
        max_per_group: no query takes more than this many candidates of one group (`store.groups`:
            video, volume, patient); `None` = no cap.

    The learner picks once what its network reads: `network` (the model, or with a trunk cache its
    trainable rest) and `source` (the store's patches, or the cached trunk features, see
    `aift_tf.sources`); scoring and fine-tuning always run `network` over `source`.

    Configuration (Keras convention): `get_config()` returns the constructor's JSON-able arguments
    (not `store`, `model`, `progress` or `distribute`, which are objects or runtime options) and
    `ActiveLearner.from_config(config, store, **runtime)` builds the same learner again.

    Strategies `bald@T` / `mc-entropy@T` score with `predict_stochastic`, `coreset` / `aift+coreset`
    with `candidate_features` (see `aift_tf.selection.select_batch`).

    Example:
    >>> learner = ActiveLearner(store, model_name="small_cnn", trainable="head", seed=0)
    >>> same = ActiveLearner.from_config(learner.get_config(), store)
    """

    def __init__(
        self,
        store,
        model=None,
        *,
        model_name: str = "small_cnn",
        weights=None,
        trainable: str = "all",
        strategy="aift",
        learning: str = "ACFT-LQ",
        omega: float = 1.0,
        finetune=None,
        seed: int = 0,
        pool_split: str = "train",
        val_split: Optional[str] = "val",
        predict_batch_size: int = 256,
        progress: Optional[Callable] = None,
        cache_trunk=False,
        distribute=None,
        max_per_group: Optional[int] = None,
    ):
        self.store = store
        self.max_per_group = _check_max_per_group(max_per_group)
        self.strategy = strategy  # parsed once (the property's setter)
        self.learning = check_learning(learning)
        self.omega = _check_omega(omega)
        if finetune is None:
            finetune = FineTuneConfig(seed=seed)
        elif isinstance(finetune, dict):
            finetune = FineTuneConfig.from_dict(finetune)
        self.finetune = finetune  # the FineTuneConfig (get_config() is the constructor's arguments)
        self.seed = int(seed)
        self.pool_split = pool_split
        self.val_split = val_split
        self.predict_batch_size = int(predict_batch_size)
        self.progress = progress
        self.model_name = model_name
        self.weights = None if weights is None else str(weights)
        self.trainable = trainable
        self.rng = np.random.default_rng(self.seed)
        self.round = 0
        self.labeled_ids = np.zeros(0, dtype=np.int64)
        self.labeled_labels = np.zeros(0, dtype=np.int64)
        self.labeled_round = np.zeros(0, dtype=np.int64)
        self._relabeled = np.zeros(0, dtype=np.int64)
        self.history: list = []
        self.pool_ids = store.ids(pool_split)
        if self.pool_ids.size == 0:
            raise AiftError(f"{store.path}: the {pool_split!r} split has no candidates to query")
        self._set_distribution(distribute)
        with self._scope():
            if isinstance(model, _Checkpoint):  # ActiveLearner.load: M_t as saved (optimizer slots kept)
                self.model, self.m0_weights = model.model, model.m0_weights
            else:
                if model is None:
                    model = self._build_m0()
                elif self.distribution is not None:
                    model = _clone_in_scope(model)
                self.model = model
                self.m0_weights = [np.array(w) for w in model.get_weights()]
                compile_model(self.model, self.finetune)
            self._setup_source(cache_trunk)

    @property
    def config(self) -> FineTuneConfig:
        """Deprecated alias of :attr:`finetune` (the fine-tuning settings), kept for one release: ``config``
        collided with :meth:`get_config`, which returns the constructor's arguments."""
        import warnings

        warnings.warn("ActiveLearner.config is deprecated; use ActiveLearner.finetune", DeprecationWarning, stacklevel=2)
        return self.finetune

    # ------------------------------------------------------------------ strategy
    @property
    def strategy(self) -> str:
        """The learner's selection strategy as a string (JSON-able: `get_config`, state.json, project files)."""
        return self._strategy_text

    @strategy.setter
    def strategy(self, value) -> None:
        spec = as_strategy(value)  # the one parse of the learner's strategy
        self._strategy_text = value if isinstance(value, str) else str(spec)
        self._strategy = spec

    @property
    def parsed_strategy(self) -> Strategy:
        """The learner's selection strategy as an `aift_tf.selection.Strategy` (parsed once)."""
        return self._strategy

    # ------------------------------------------------------------------ configuration
    def get_config(self) -> dict:
        """The constructor's arguments as a JSON-able dict (no store, model or runtime options).

        `ActiveLearner.from_config(learner.get_config(), store)` builds an equal fresh learner (M0
        from the zoo: pass `model=` when M0 was a custom model).
        """
        return {
            "model_name": self.model_name,
            "weights": self.weights,
            "trainable": self.trainable,
            "strategy": self.strategy,
            "learning": self.learning,
            "omega": self.omega,
            "finetune": self.finetune.to_dict(),
            "seed": self.seed,
            "pool_split": self.pool_split,
            "val_split": self.val_split,
            "predict_batch_size": self.predict_batch_size,
            "cache_trunk": self.cache_trunk,
            "max_per_group": self.max_per_group,
        }

    @classmethod
    def from_config(cls, config: dict, store, **runtime) -> "ActiveLearner":
        """A learner built from :meth:`get_config`'s dict over `store`.

        Args:
            config: a dict of constructor arguments (as :meth:`get_config` returns).
            store: the open candidate store.
            **runtime: other constructor arguments: `model`, `progress`, `distribute`, or a config
                key to override (e.g. `cache_trunk`).

        Example:
        >>> b = ActiveLearner.from_config(a.get_config(), store, progress=print)
        """
        if not isinstance(config, dict):
            raise AiftError(f"a learner config must be a dict, got {type(config).__name__}")
        known = set(inspect.signature(cls.__init__).parameters) - {"self", "store"}
        for key in list(config) + list(runtime):
            if key not in known:
                raise AiftError(f"unknown learner option {key!r}; valid: {', '.join(sorted(known))}")
        return cls(store, **{**config, **runtime})

    # ------------------------------------------------------------------ distribution / sources
    def _set_distribution(self, distribute):
        self.distribution = _distribution_or_none(distribute)
        if self.distribution is None:
            self.distribute_name = "none"
            return
        from aift_tf.distribute import distribution_name

        self.distribute_name = distribution_name(self.distribution)

    def _scope(self):
        import contextlib

        return self.distribution.scope() if self.distribution is not None else contextlib.nullcontext()

    def _setup_source(self, cache_trunk):
        """Choose (network, source) once: the model over the store's patches, or with `cache_trunk` the
        trainable rest over the cached trunk activations (see `aift_tf.trunk_cache`)."""
        from aift_tf.sources import StoreSource

        self.cache_trunk = cache_trunk if isinstance(cache_trunk, bool) or cache_trunk is None else str(cache_trunk)
        self._net, self._source = self.model, StoreSource(self.store)
        self._features = None  # trunk features for coreset strategies (the cache, or built lazily)
        if not cache_trunk:
            self.cache_trunk = False
            return
        from aift_tf.trunk_cache import TrunkCache, check_cacheable
        from aift_tf.zoo import model_config, split_frozen

        policy = model_config(self.model).get("trainable")
        check_cacheable(policy, self.finetune.augment)
        trunk, rest = split_frozen(self.model)
        if rest is self.model:
            raise AiftError(f"cache_trunk: model {self.model.name!r} has no frozen trunk to cache")
        directory = None if cache_trunk is True else cache_trunk
        cache = TrunkCache(self.store, trunk, directory=directory, batch_size=self.predict_batch_size,
                           distribution=self.distribution, progress=self._stage("trunk"))
        opt = self.model.optimizer
        if not opt.built:  # slots in the full model's variable order, so model.keras saves them right
            opt.build(self.model.trainable_variables)
        rest.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                     jit_compile=False)
        self._net, self._source, self._features = rest, cache, cache

    @property
    def network(self):
        """The Keras model that scoring and fine-tuning run: `model`, or its trainable rest with a
        trunk cache (it shares its layers with `model`)."""
        return self._net

    @property
    def source(self):
        """What `network` reads (an `aift_tf.sources.PatchSource`): the store's patches or the trunk cache."""
        return self._source

    # ------------------------------------------------------------------ building
    def _build_m0(self):
        from aift_tf.zoo import build_model

        if self.finetune.mixed_precision:
            import keras

            keras.mixed_precision.set_global_policy("mixed_float16")
        return build_model(
            self.model_name,
            input_shape=tuple(self.store.patch_shape),
            num_classes=self.store.num_classes,
            weights=self.weights,
            trainable=self.trainable,
            seed=self.seed,
        )

    # ------------------------------------------------------------------ pool state
    def unlabeled_ids(self, pool=None) -> np.ndarray:
        """Pool candidates not yet labeled, in pool order.

        Args:
            pool: candidate ids to restrict to (each in the learner's pool); `None` = the whole pool.
        """
        pool = self.pool_ids if pool is None else self._check_pool(pool)
        return pool[~np.isin(pool, self.labeled_ids)]

    def _check_pool(self, pool) -> np.ndarray:
        arr = np.asarray(pool)
        if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
            raise AiftError(f"pool must be a 1-D array of candidate ids, got shape {arr.shape} dtype {arr.dtype}")
        arr = arr.astype(np.int64)
        out = arr[~np.isin(arr, self.pool_ids)]
        if out.size:
            raise AiftError(f"candidate id {int(out[0])} is not in the {self.pool_split!r} pool")
        if np.unique(arr).size != arr.size:
            raise AiftError("pool lists a candidate id twice")
        return arr

    @property
    def relabeled_ids(self) -> np.ndarray:
        """Labeled candidates relabeled since the last `teach` (taught with their new label next)."""
        return self._relabeled.copy()

    def _stage(self, stage):
        if self.progress is None:
            return None
        return lambda done, total: self.progress(stage, done, total)

    def predict(self, ids) -> np.ndarray:
        """Patch probabilities (len(ids), m, K) of the current model."""
        from aift_tf.pipelines import predict_candidates

        ids = np.asarray(ids, dtype=np.int64)
        return predict_candidates(self._net, self._source, ids, batch_size=self.predict_batch_size,
                                  progress=self._stage("score"), distribution=self.distribution)

    def predict_stochastic(self, ids, passes: int, seed: int = 0) -> np.ndarray:
        """Patch probabilities of `passes` stochastic forward passes with dropout on (MC dropout).

        BatchNorm stays in inference mode (its layers are frozen by the zoo's policies; a model whose
        BatchNorm is trainable is refused). With a trunk cache only the trainable rest runs `passes`
        times, on the cached features. The dropout masks depend only on `seed` (every `SeedGenerator`
        of the model is re-seeded first; fine-tuning re-seeds them again every round).

        Returns:
            float32 `(passes, len(ids), m, K)`.
        """
        import keras

        from aift_tf.finetune import reseed_layers

        ids = np.asarray(ids, dtype=np.int64)
        passes = int(passes)
        if passes < 1:
            raise AiftError(f"passes must be >= 1, got {passes}")
        net, source = self._net, self._source
        if not any(isinstance(layer, keras.layers.Dropout) for layer in net.layers):
            raise AiftError(f"model {self.model.name!r} has no Dropout layer after its frozen trunk: MC dropout "
                            f"(bald, mc-entropy) needs one")
        bn = [layer.name for layer in net.layers
              if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]
        if bn:
            raise AiftError(f"MC dropout needs BatchNorm in inference mode; layer {bn[0]!r} is trainable")
        reseed_layers(net, seed)
        m, step = int(source.m), max(1024, self.predict_batch_size)  # patches per call
        out = None
        for a in range(0, ids.size, max(1, step // m)):
            chunk = ids[a:a + max(1, step // m)]
            x = source.read_float(chunk).reshape((-1,) + tuple(source.example_shape))
            for t in range(passes):
                y = np.asarray(net(x, training=True), dtype=np.float32)
                if out is None:
                    out = np.empty((passes, ids.size, m, y.shape[-1]), dtype=np.float32)
                out[t, a:a + chunk.size] = y.reshape(chunk.size, m, -1)
        if out is None:
            out = np.empty((passes, 0, m, int(net.output_shape[-1])), dtype=np.float32)
        return out

    def candidate_features(self, ids) -> np.ndarray:
        """The frozen trunk's features of `ids`, averaged over each candidate's patches and the spatial
        axes: float32 `(len(ids), channels)` (the k-center space of `coreset`)."""
        if self._features is None:  # no trunk cache: compute the trunk's features once, in memory
            from aift_tf.trunk_cache import TrunkCache
            from aift_tf.zoo import split_frozen

            trunk, rest = split_frozen(self.model)
            if rest is self.model:
                raise AiftError(f"model {self.model.name!r} has no frozen trunk (trainable 'all'): coreset "
                                f"strategies need trunk features; use trainable 'top' or 'head'")
            self._features = TrunkCache(self.store, trunk, batch_size=self.predict_batch_size,
                                        distribution=self.distribution)
        return self._features.pooled(ids)

    # ------------------------------------------------------------------ query
    def query(self, query_size: Optional[int] = None, *, scores=None, strategy=None,
              omega: Optional[float] = None, pool=None, rng_seed=None, b: Optional[int] = None) -> Query:
        """Choose `query_size` unlabeled candidates to annotate.

        This is the boundary where a query's settings are checked, once: the strategy (a string is parsed
        here into an `aift_tf.selection.Strategy`, which is passed down), ω and the query size; the
        selection functions below do not check them again.

        Args:
            query_size: how many (an integer >= 1, at most the unlabeled candidates of the pool).
                `b=` is a deprecated alias.
            scores: merged scores of the current model over exactly the unlabeled pool
                (`aift_tf.scoring.read_scores(path)` or the path), used instead of scoring the pool
                here (sharded scoring, docs/distributed.md); checked against the pool, store and model.
            strategy: a selection strategy for this query only, a string or a `Strategy` (default: the
                learner's).
            omega: ω for this query only (default: the learner's).
            pool: query among these candidate ids only (each in the learner's pool; labeled ones
                are skipped); default: the whole pool.
            rng_seed: seed this query's randomness with `np.random.default_rng(rng_seed)` (an int or
                a sequence of ints) instead of drawing from the learner's RNG, which then stays
                untouched.

        Returns:
            A :class:`Query` (`ids`, `scores`, `probabilities`, `seconds`), which also unpacks as
            `ids, scores = learner.query(query_size)`.

        Example:
        >>> q = learner.query(20, strategy="entropy", rng_seed=[0, 3])
        >>> q.ids.shape, q.probabilities.shape
        ((20,), (20, 5, 2))
        """
        if b is not None:  # the old name of query_size
            if query_size is not None:
                raise TypeError("ActiveLearner.query() got both query_size and its deprecated alias b")
            warnings.warn("ActiveLearner.query(b=...) is deprecated; use query_size=...", DeprecationWarning,
                          stacklevel=2)
            query_size = b
        spec = self._strategy if strategy is None else as_strategy(strategy)
        omega = _check_omega(self.omega if omega is None else omega)
        pool = self.unlabeled_ids(pool)
        query_size = check_int(query_size, "query_size", 1, coerce=True)
        if query_size > pool.size:
            raise AiftError(f"query_size {query_size} is larger than the {pool.size} unlabeled candidates left "
                            f"in the pool")
        given = None
        if scores is not None:
            from aift_tf.scoring import pool_probabilities

            given = pool_probabilities(scores, pool, self.store, self.model)
        if rng_seed is None:
            rng = self.rng
        else:
            try:
                rng = np.random.default_rng(rng_seed)
            except (TypeError, ValueError):
                raise AiftError(f"rng_seed must be a non-negative integer or a sequence of them, "
                                f"got {rng_seed!r}") from None
        qseed = int(rng.integers(2**31 - 1))
        t0 = time.perf_counter()
        kw = {}
        if spec.needs_probs:
            kw["probs"] = self.predict(pool) if given is None else given
        if spec.needs_mc:
            kw["mc_probs"] = self.predict_stochastic(pool, spec.passes, seed=qseed)
        if spec.needs_features:
            kw["features"] = self.candidate_features(pool)
            kw["centers"] = self.candidate_features(self.labeled_ids) if self.labeled_ids.size else None
        if self.max_per_group is not None:
            kw.update(groups=self.store.groups[pool], max_per_group=self.max_per_group)
        picked, worth = select_batch(spec, query_size, n=pool.size, omega=omega, seed=qseed, checked=True, **kw)
        self.last_query_seconds = time.perf_counter() - t0
        probs = kw.get("probs")
        return Query(ids=pool[picked], scores=worth,
                     probabilities=None if probs is None else np.asarray(probs)[picked],
                     seconds=self.last_query_seconds, strategy=spec, omega=omega)

    # ------------------------------------------------------------------ labels
    def _check_labels(self, ids, labels):
        """`ids` (1-D int64) and `labels` checked for shape, duplicates and class range."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        labels = np.asarray(labels).ravel()
        if ids.shape != labels.shape:
            raise AiftError(f"got {ids.size} ids but {labels.size} labels")
        return ids, labels

    def _check_unique(self, ids) -> None:
        if len(np.unique(ids)) != ids.size:
            dup = ids[np.argmax([np.sum(ids == i) > 1 for i in ids])]
            raise AiftError(f"candidate id {int(dup)} appears twice")

    def _check_classes_of(self, labels) -> np.ndarray:
        if not np.issubdtype(labels.dtype, np.integer):
            try:
                as_int = labels.astype(np.float64)
            except (TypeError, ValueError):
                raise AiftError(f"labels must be integers, got {labels[0]!r}") from None
            if not np.all(np.isfinite(as_int)) or np.any(as_int != np.round(as_int)):
                raise AiftError(f"labels must be integers, got {labels[np.argmax(~np.isfinite(as_int) | (as_int != np.round(as_int)))]!r}")
            labels = as_int.astype(np.int64)
        labels = labels.astype(np.int64)
        k = self.store.num_classes
        out = labels[(labels < 0) | (labels >= k)]
        if out.size:
            raise AiftError(f"label {int(out[0])} is outside the classes 0..{k - 1}")
        return labels

    def _check_labeled(self, ids) -> None:
        new = ids[~np.isin(ids, self.labeled_ids)]
        if new.size:
            raise AiftError(f"candidate id {int(new[0])} is not labeled")

    def _check_teach(self, ids, labels):
        ids, labels = self._check_labels(ids, labels)
        if ids.size == 0 and self._relabeled.size == 0:
            raise AiftError("teach needs at least one labeled candidate")
        self._check_unique(ids)
        bad = ids[~np.isin(ids, self.pool_ids)]
        if bad.size:
            raise AiftError(f"candidate id {int(bad[0])} is not in the {self.pool_split!r} pool")
        again = ids[np.isin(ids, self.labeled_ids)]
        if again.size:
            raise AiftError(f"candidate id {int(again[0])} is already labeled")
        return ids, self._check_classes_of(labels)

    def relabel(self, ids, labels) -> None:
        """Change the labels of already-labeled candidates (an annotator's correction).

        The model is not trained now: the next :meth:`teach` trains the relabeled candidates with
        their new labels as if they were among its new candidates (whatever the learning strategy),
        and records them as labeled in that round. `teach([], [])` then teaches the corrections alone.

        Args:
            ids: labeled candidate ids.
            labels: their new labels.

        Example:
        >>> learner.relabel([17], [0])
        >>> learner.teach(new_ids, new_labels)       # trains id 17 as class 0 too
        """
        ids, labels = self._check_labels(ids, labels)
        self._check_unique(ids)
        self._check_labeled(ids)
        labels = self._check_classes_of(labels)
        pos = {int(i): k for k, i in enumerate(self.labeled_ids.tolist())}
        where = np.array([pos[int(i)] for i in ids], dtype=np.int64)
        self.labeled_labels = self.labeled_labels.copy()
        self.labeled_labels[where] = labels
        self._relabeled = np.concatenate([self._relabeled, ids[~np.isin(ids, self._relabeled)]])

    def forget(self, ids) -> None:
        """Remove labeled candidates from the labeled set (e.g. while annotators disagree on them).

        They become unlabeled again: a later :meth:`teach` may label them anew and queries may
        choose them. The model is unchanged until the next teach (whose training set no longer has them).

        Example:
        >>> learner.forget([17, 21])
        """
        ids = np.asarray(ids, dtype=np.int64).ravel()
        self._check_labeled(ids)
        keep = ~np.isin(self.labeled_ids, ids)
        self.labeled_ids = self.labeled_ids[keep]
        self.labeled_labels = self.labeled_labels[keep]
        self.labeled_round = self.labeled_round[keep]
        self._relabeled = self._relabeled[~np.isin(self._relabeled, ids)]

    def missing_classes(self, new_labels=()) -> list:
        """Classes with no label among the labeled candidates (plus `new_labels`), in class order."""
        have = set(self.labeled_labels.tolist()) | set(np.asarray(new_labels, dtype=np.int64).ravel().tolist())
        return [k for k in range(self.store.num_classes) if k not in have]

    def _check_classes(self, new_labels) -> None:
        """Refuse to fine-tune on a labeled set that lacks a class: a softmax head trained on one class
        learns to predict it everywhere, which flips or erases M0's ranking, and the strategy then keeps
        querying the wrong candidates."""
        missing = self.missing_classes(new_labels)
        if missing:
            names = list(self.store.class_names)
            text = ", ".join(f"{k} ({names[k]})" if k < len(names) else str(k) for k in missing)
            raise AiftError(f"the labeled set has no candidate of class {text}: fine-tuning on it would "
                            f"teach the model a single class; label candidates of every class first "
                            f"(e.g. a random initial set) and teach them together")

    def _misclassified(self) -> np.ndarray:
        """Labeled candidates (so far) that the current model M_{t-1} gets wrong."""
        if self.labeled_ids.size == 0:
            return np.zeros(0, dtype=np.int64)
        probs = self.predict(self.labeled_ids)
        pred = probs.mean(axis=1).argmax(axis=-1)
        return self.labeled_ids[pred != self.labeled_labels]

    # ------------------------------------------------------------------ teach
    def teach(self, ids, labels, callbacks=(), verbose: int = 0) -> dict:
        """Record the oracle's labels for `ids` and fine-tune (round t → t+1).

        Candidates relabeled since the last teach (:meth:`relabel`) are trained as new ones too.

        Returns:
            The round record: round, labels so far, training candidates, fine-tuning history.
        """
        ids, labels = self._check_teach(ids, labels)
        self._check_classes(labels)
        mis = self._misclassified() if self.learning == "ACFT-HQ" else None
        relabeled = self._relabeled
        self.round += 1
        self.labeled_ids = np.concatenate([self.labeled_ids, ids])
        self.labeled_labels = np.concatenate([self.labeled_labels, labels])
        self.labeled_round = np.concatenate([self.labeled_round, np.full(ids.size, self.round, np.int64)])
        new = ids
        if relabeled.size:
            self.labeled_round[np.isin(self.labeled_ids, relabeled)] = self.round
            new = np.concatenate([ids, relabeled])
            self._relabeled = np.zeros(0, dtype=np.int64)
        train_ids, restart = learning_plan(self.learning, new, self.labeled_ids, mis)
        if restart:
            self.model.set_weights(self.m0_weights)
            reset_optimizer(self.model)
        lookup = dict(zip(self.labeled_ids.tolist(), self.labeled_labels.tolist()))
        train_labels = np.array([lookup[i] for i in train_ids.tolist()], dtype=np.int64)
        hist = fine_tune(
            self._net, self._source, train_ids, train_labels, self.finetune, round_index=self.round,
            val_ids=self._val_ids(), callbacks=callbacks, verbose=verbose, distribution=self.distribution,
        )
        record = {
            "round": self.round,
            "labels": int(self.labeled_ids.size),
            "new": int(ids.size),
            "positives": int(np.sum(self.labeled_labels > 0)),
            "train_candidates": int(train_ids.size),
            "restart_from_m0": bool(restart),
            "finetune": hist,
        }
        if relabeled.size:
            record["relabeled"] = int(relabeled.size)
        self.history.append(record)
        return record

    def _val_ids(self):
        if self.val_split is None:
            return None
        ids = self.store.ids(self.val_split)
        ids = ids[self.store.labels[ids] >= 0]
        if ids.size == 0 or len(np.unique(self.store.labels[ids])) < 2:
            return None
        return ids

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, split: str = "test") -> dict:
        """Candidate-level AUC (mean of patch probabilities) of the current model on a split.

        Binary stores: ``probability`` is P(class 1) ``(n,)``; K > 2: the ``(n, K)`` class probabilities and
        ``auc`` the macro one-vs-rest AUC over the classes present in the split.
        """
        from aift_tf.metrics import auc, candidate_prediction

        ids = self.store.ids(split)
        ids = ids[self.store.labels[ids] >= 0]
        if ids.size == 0:
            raise AiftError(f"{self.store.path}: the {split!r} split has no labeled candidates to evaluate on")
        probs = self.predict(ids)
        p = candidate_prediction(probs)
        p = p[:, 1] if p.shape[1] == 2 else p
        return {"auc": float(auc(self.store.labels[ids], p)), "ids": ids, "probability": p}

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict:
        """What `state.json` holds: `config` (:meth:`get_config`), the run's state (round, labels,
        RNG, history) and, for readers of older states, the settings as top-level fields too."""
        config = self.get_config()
        return {
            "format": STATE_FORMAT,
            "aift_tf_version": __version__,
            "store": str(self.store.path),
            "store_sha256": self.store.sha256,
            **config,  # the settings as top-level fields too, for readers of states without "config"
            "distribute": self.distribute_name,
            "round": self.round,
            "labeled_ids": self.labeled_ids.tolist(),
            "labeled_labels": self.labeled_labels.tolist(),
            "labeled_round": self.labeled_round.tolist(),
            "relabeled_ids": self._relabeled.tolist(),
            "rng": self.rng.bit_generator.state,
            "history": self.history,
            "config": config,
        }

    def save(self, path) -> Path:
        """Write the whole state to folder `path` atomically (replacing an older state there).

        Contents: `state.json` (`{config, state}`: :meth:`get_config`, labels, round, RNG),
        `model.keras` (current model with optimizer slots), `m0.weights.h5` (the starting weights).
        """
        return checkpoint.write(path, self.model, self._m0_file_bytes(), self.state_dict())

    def _m0_file_bytes(self) -> bytes:
        """The bytes of `m0.weights.h5`. M0 never changes, so the file is built once (a clone of the
        model holding M0's weights) and its bytes are reused by every later save: a round's save then
        costs one `model.save`, not a model clone as well."""
        cached = getattr(self, "_m0_bytes", None)
        if cached is None:
            import tempfile

            import keras

            m0 = keras.models.clone_model(self.model)
            m0.set_weights(self.m0_weights)
            with tempfile.TemporaryDirectory() as d:
                f = checkpoint.m0_file(d)
                m0.save_weights(f)
                cached = self._m0_bytes = f.read_bytes()
        return cached

    @classmethod
    def load(cls, path, store, progress: Optional[Callable] = None, *, cache_trunk=None,
             distribute=None) -> "ActiveLearner":
        """Restore a learner saved with :meth:`save` over the same store.

        The learner is rebuilt with :meth:`from_config` (the state's `config`, or for states saved
        before it existed, the same settings from their top-level fields) around the saved model,
        then its state (round, labels, RNG, history) and M0's weights are restored.

        ``cache_trunk`` / ``distribute``: ``None`` = as saved (``distribute`` as saved only when it
        was ``"none"``; pass a distribution to resume distributed).

        Example:
        >>> learner = ActiveLearner.load("run/state", store)
        """
        import keras

        from aift_tf.zoo.layers import load_model as load_keras_file

        path = Path(path)
        state_file = checkpoint.state_file(path)
        state = checkpoint.read_state(path, "not a saved learner")
        if state.get("format") != STATE_FORMAT:
            raise AiftError(f"{state_file}: unsupported state format {state.get('format')!r}")
        if state["store_sha256"] != store.sha256:
            raise AiftError(f"{path}: was saved for another store (sha256 {state['store_sha256'][:12]}…, "
                            f"{store.path} has {store.sha256[:12]}…)")
        config = state["config"] if isinstance(state.get("config"), dict) else _config_of_old_state(state)
        if cache_trunk is not None:
            config = {**config, "cache_trunk": cache_trunk}
        distribution = _distribution_or_none(distribute)
        model_file = checkpoint.model_file(path)
        try:
            with (distribution.scope() if distribution is not None else contextlib.nullcontext()):
                model = load_keras_file(model_file, compile=True)
        except Exception as e:  # corrupt or missing model file
            raise AiftError(f"{model_file}: cannot load model ({type(e).__name__}: {e})") from None
        m0 = keras.models.clone_model(model)
        m0.load_weights(checkpoint.m0_file(path))
        m0_weights = [np.array(w) for w in m0.get_weights()]
        self = cls.from_config(config, store, model=_Checkpoint(model, m0_weights), progress=progress,
                               distribute=distribution)
        self._m0_bytes = checkpoint.m0_file(path).read_bytes()
        self._restore_state(state)
        return self

    def _restore_state(self, state: dict) -> None:
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = state["rng"]
        self.round = int(state["round"])
        self.labeled_ids = np.asarray(state["labeled_ids"], dtype=np.int64)
        self.labeled_labels = np.asarray(state["labeled_labels"], dtype=np.int64)
        self.labeled_round = np.asarray(state["labeled_round"], dtype=np.int64)
        self._relabeled = np.asarray(state.get("relabeled_ids", []), dtype=np.int64)
        self.history = state["history"]


def _config_of_old_state(state: dict) -> dict:
    """The learner config of a state.json written before it had a `config` key (same settings)."""
    return {
        "model_name": state["model_name"],
        "weights": state["weights"],
        "trainable": state["trainable"],
        "strategy": state["strategy"],
        "learning": state["learning"],
        "omega": float(state["omega"]),
        "finetune": state["finetune"],
        "seed": int(state["seed"]),
        "pool_split": state["pool_split"],
        "val_split": state["val_split"],
        "predict_batch_size": int(state["predict_batch_size"]),
        "cache_trunk": state.get("cache_trunk", False),
        "max_per_group": state.get("max_per_group"),
    }


def _distribution_or_none(distribute):
    """The `tf.distribute.Strategy` named by `distribute`, or None for none."""
    if distribute is None or (isinstance(distribute, str) and distribute.strip().lower() in ("none", "")):
        return None
    from aift_tf.distribute import get_distribution

    return get_distribution(distribute)


def _check_omega(omega) -> float:
    from aift_tf.checks import check_number

    return check_number(omega, "omega", low=1, coerce=True)


def _check_max_per_group(value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 1:
        raise AiftError(f"max_per_group must be an integer >= 1 or None, got {value!r}")
    return int(value)


def _clone_in_scope(model):
    """A copy of ``model`` (same weights, trainable flags and zoo config) built in the current scope."""
    import keras

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    for a, b in zip(model.layers, clone.layers):
        b.trainable = a.trainable
    cfg = getattr(model, "_aift_config", None)
    if cfg is not None:
        clone._aift_config = dict(cfg)
    return clone
