"""Sharded scoring of a candidate pool, and the scores file format (see docs/distributed.md).

Scoring the whole unlabeled pool is the part of a round that outgrows one node first. It is
embarrassingly parallel, so it is split by candidate: every shard process scores its share of the pool
with the model of the round and writes a *part* file; a merge checks that the parts cover the pool
exactly once and writes the *scores* file the learner queries from
(``ActiveLearner.query(b, scores=read_scores(path))``).

* :func:`shard_ids` — the share of shard ``i`` of ``N``: ``"contiguous"`` (consecutive blocks of the
  pool in id order) or ``"hash"`` (a fixed multiplicative hash of the id: a candidate stays in its
  shard when others are labeled, and pools sorted by scanner or site are spread evenly).
* :func:`score_shard` — loads the model (a ``.keras`` file, or a saved learner folder whose labeled
  candidates are then left out of the pool), scores the share with
  :func:`aift_tf.pipelines.predict_candidates` (optionally under a distribution, a ``tf.distribute.Strategy``, over the
  node's devices) and writes the part file.
* :func:`merge_shards` — checks the parts (same store, model, pool and shard count; every pool id in
  exactly one part) and writes ids, probabilities and worth (:func:`aift_tf.selection.strategy_scores`).
* :func:`read_scores` / :func:`pool_probabilities` — read a scores file; check it against a learner's
  pool, store and model.

File format (HDF5, written atomically; attribute ``format = "aift-scores"``, ``version = 1``):
``ids`` int64 (n,), ``probs`` float32 (n, m, K), ``pool_ids`` int64 (the whole pool, in id order);
merged files add ``worth`` float64 (n,). Attributes: ``kind`` (``"part"``/``"merged"``),
``store_sha256``, ``model_fingerprint`` (sha256 of the model weights), ``split``, ``shard_index``,
``shard_count``, ``shard_mode``, and for merged files ``strategy``.

Example:
>>> score_shard("pe.h5", "run/state-3", "part-0.h5", shard=(0, 2))   # on node A
>>> score_shard("pe.h5", "run/state-3", "part-1.h5", shard=(1, 2))   # on node B
>>> merge_shards(["part-0.h5", "part-1.h5"], "scores.h5", strategy="aift")
>>> learner.query(20, scores=read_scores("scores.h5"))
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np

from aift_tf import checkpoint
from aift_tf.errors import AiftError
from aift_tf.files import atomic_path

__all__ = ["FORMAT", "VERSION", "SHARD_MODES", "MAX_SHARDS", "Scores", "parse_shard", "shard_ids", "model_fingerprint",
           "load_scoring_model", "check_out", "score_shard", "merge_shards", "read_scores", "pool_probabilities"]

FORMAT = "aift-scores"
VERSION = 1
SHARD_MODES = ("contiguous", "hash")
MAX_SHARDS = 1_000_000  # N of i/N
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing multiplier (2**64 / golden ratio)


@dataclasses.dataclass
class Scores:
    """The contents of a scores (or part) file."""

    path: Path
    kind: str
    ids: np.ndarray
    probs: np.ndarray
    pool_ids: np.ndarray
    worth: np.ndarray | None
    attrs: dict


def parse_shard(text) -> tuple:
    """``"i/N"`` → ``(i, N)`` with ``0 <= i < N <= MAX_SHARDS`` (shards are numbered from 0, like TF_CONFIG tasks).

    Example:
    >>> parse_shard("1/3")
    (1, 3)
    """
    raw = str(text).strip()
    left, sep, right = raw.partition("/")
    try:
        i, n = int(left), int(right)
    except ValueError:
        raise AiftError(f"shard {text!r} is not of the form i/N (e.g. 0/3)") from None
    if not sep or n < 1 or not 0 <= i < n:
        raise AiftError(f"shard {text!r}: need 0 <= i < N (shards are numbered 0..N-1)")
    if n > MAX_SHARDS:
        raise AiftError(f"shard {text!r}: N must be <= {MAX_SHARDS}; got {n}")
    return i, n


def shard_ids(pool_ids, index: int, count: int, mode: str = "contiguous") -> np.ndarray:
    """The ids of shard ``index`` of ``count`` of a pool (in id order); the shards partition the pool.

    Args:
        pool_ids: the pool's candidate ids.
        index, count: ``0 <= index < count``.
        mode: ``"contiguous"`` (``numpy.array_split`` of the sorted pool) or ``"hash"``
            (``(id · 0x9E3779B97F4A7C15 mod 2**64) >> 32 mod count``).

    Example:
    >>> shard_ids(np.arange(10), 1, 3).tolist()
    [4, 5, 6]
    """
    if mode not in SHARD_MODES:
        raise AiftError(f"unknown shard mode {mode!r}; valid: {', '.join(SHARD_MODES)}")
    parse_shard(f"{index}/{count}")
    pool = np.sort(np.asarray(pool_ids, dtype=np.int64))
    if mode == "contiguous":
        return np.array_split(pool, count)[index]
    with np.errstate(over="ignore"):
        h = (pool.astype(np.uint64) * _GOLDEN) >> np.uint64(32)
    return pool[(h % np.uint64(count)).astype(np.int64) == index]


def model_fingerprint(model) -> str:
    """sha256 of a model's weights (shapes and bytes, in order): the same model scores the same.

    Example:
    >>> model_fingerprint(learner.model)[:12]
    '3f2a…'
    """
    h = hashlib.sha256()
    for w in model.get_weights():
        w = np.ascontiguousarray(w)
        h.update(str((w.shape, w.dtype.str)).encode())
        h.update(w.tobytes())
    return h.hexdigest()


def load_scoring_model(path, store, split: str = "train", distribution=None):
    """``(model, pool_ids, split)`` from a ``.keras`` file (pool = ``split``) or a saved learner folder
    (pool = its pool split minus its labeled candidates, as ``ActiveLearner.unlabeled_ids``).

    Example:
    >>> model, pool, split = load_scoring_model("run/state-3", store)
    """
    import contextlib

    from aift_tf.zoo.layers import load_model as load_keras_file

    path = Path(path)
    if path.is_dir():
        state_file = checkpoint.state_file(path)
        state = checkpoint.read_state(path, "neither a .keras model nor a saved learner")
        if not isinstance(state, dict):
            raise AiftError(f"{state_file}: not a saved learner's state (a JSON object expected)")
        if state.get("store_sha256") != store.sha256:
            raise AiftError(f"{path}: was saved for another store than {store.path}")
        split = state.get("pool_split")
        if split not in ("train", "val", "test"):
            raise AiftError(f"{state_file}: field pool_split must be train, val or test; got {split!r}")
        raw = state.get("labeled_ids", [])
        if not isinstance(raw, list) or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < store.n
                                                for i in raw):
            raise AiftError(f"{state_file}: field labeled_ids must be a list of candidate ids in 0 .. "
                            f"{store.n - 1}; got {str(raw)[:80]}")
        labeled = np.asarray(raw, dtype=np.int64)
        model_file = checkpoint.model_file(path)
    else:
        labeled = np.zeros(0, dtype=np.int64)
        model_file = path
    if not model_file.is_file():
        raise AiftError(f"{model_file}: no such model file")
    scope = distribution.scope() if distribution is not None else contextlib.nullcontext()
    try:
        with scope:
            model = load_keras_file(model_file, compile=False)
    except Exception as e:  # corrupt file, not a Keras model
        raise AiftError(f"{model_file}: cannot load model ({type(e).__name__}: {str(e)[:120]})") from None
    _check_model_fits(model, model_file, store)
    pool = store.ids(split)
    if pool.size == 0:
        raise AiftError(f"{store.path}: the {split!r} split has no candidates to score")
    return model, pool[~np.isin(pool, labeled)], split


def check_out(out, inputs=()) -> Path:
    """The scores file to write: a file path in an existing folder, not one of ``inputs`` (store, model, parts),
    and, if it exists, a scores file written before (which it replaces); anything else is refused.

    Example:
    >>> check_out("part-0.h5", inputs=["pe.h5", "model.keras"])
    PosixPath('part-0.h5')
    """
    import h5py

    path = Path(out)
    if str(out).strip() == "" or path.name in ("", ".", ".."):
        raise AiftError(f"{str(out)!r}: --out must be a file path (.h5)")
    if not path.parent.exists():
        raise AiftError(f"{path}: parent folder {path.parent} does not exist")
    if not path.parent.is_dir():
        raise AiftError(f"{path}: {path.parent} is a file, not a folder")
    if path.is_dir():
        raise AiftError(f"{path}: --out is a folder, expected a file path")
    for p in inputs:
        p = Path(p)
        same = path.resolve() == p.resolve()
        if not same and path.exists() and p.exists():
            same = path.samefile(p)
        if same:
            raise AiftError(f"{path}: --out would overwrite the input {p}")
    if path.exists():
        try:
            with h5py.File(path, "r") as f:
                fmt = f.attrs.get("format")
        except OSError:
            fmt = None
        if isinstance(fmt, bytes):
            fmt = fmt.decode(errors="replace")
        if fmt != FORMAT:
            raise AiftError(f"{path}: exists and is not an aift scores file; --out replaces only a scores file "
                            f"written before (give another path)")
    return path


def _check_model_fits(model, model_file, store) -> None:
    """The model reads the store's patches and outputs its K classes; a one-line AiftError otherwise."""
    try:
        got_in = tuple(model.inputs[0].shape)[1:]
        got_k = tuple(model.outputs[0].shape)[-1]
    except (AttributeError, IndexError, TypeError):
        return  # a subclassed model without symbolic inputs: left to the first batch
    want = tuple(store.patch_shape)
    if len(got_in) != len(want) or any(a is not None and int(a) != b for a, b in zip(got_in, want)):
        shown = "x".join("?" if a is None else str(a) for a in got_in)
        raise AiftError(f"{model_file}: the model takes patches of shape {shown} but {store.path} holds "
                        f"{'x'.join(map(str, want))} patches")
    if got_k is not None and int(got_k) != store.num_classes:
        raise AiftError(f"{model_file}: the model outputs {got_k} classes but {store.path} has "
                        f"{store.num_classes} ({', '.join(store.class_names)})")


def _write(path, datasets: dict, attrs: dict) -> None:
    import h5py

    with atomic_path(path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as f:
            for name, arr in datasets.items():
                f.create_dataset(name, data=arr)
            f.attrs.update({"format": FORMAT, "version": VERSION, **attrs})


def score_shard(store, model, out, shard=(0, 1), mode: str = "contiguous", split: str = "train",
                batch_size: int = 256, distribute=None, progress=None) -> Path:
    """Score shard ``shard = (i, N)`` of the pool and write the part file ``out``.

    Args:
        store: an open ``CandidateStore`` (or its path).
        model: a ``.keras`` file or a saved learner folder (see :func:`load_scoring_model`).
        out: the part file (.h5) to write (atomically).
        shard: ``(i, N)`` or ``"i/N"``.
        mode: ``"contiguous"`` or ``"hash"`` (see :func:`shard_ids`).
        split: the pool split when ``model`` is a ``.keras`` file.
        batch_size: patches per forward pass.
        distribute: optional distribution name or ``tf.distribute.Strategy`` over this node's devices.
        progress: optional ``callable(done, total)``.

    Returns:
        ``Path(out)``.

    Example:
    >>> score_shard("pe.h5", "run/state-3", "part-1.h5", shard="1/4", mode="hash")
    """
    from aift_tf.pipelines import predict_candidates
    from aift_tf.store import open_store

    if isinstance(shard, str):
        shard = parse_shard(shard)
    index, count = parse_shard(f"{shard[0]}/{shard[1]}")
    check_out(out, [getattr(store, "path", store), model, checkpoint.model_file(model)])
    if isinstance(store, (str, Path)):
        with open_store(store) as s:
            return score_shard(s, model, out, (index, count), mode, split, batch_size, distribute, progress)
    distribution = None
    if distribute is not None and distribute != "none":
        from aift_tf.distribute import get_distribution

        distribution = get_distribution(distribute)
    net, pool, split = load_scoring_model(model, store, split, distribution)
    ids = shard_ids(pool, index, count, mode)
    probs = predict_candidates(net, store, ids, batch_size=batch_size, progress=progress, distribution=distribution)
    _write(out, {"ids": ids, "probs": probs, "pool_ids": np.sort(pool)},
           {"kind": "part", "store_sha256": store.sha256, "model_fingerprint": model_fingerprint(net),
            "split": split, "shard_index": index, "shard_count": count, "shard_mode": mode})
    return Path(out)


def read_scores(path) -> Scores:
    """Read a part or merged scores file (one-line AiftError if it is not one).

    Example:
    >>> read_scores("scores.h5").worth[:3]
    """
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: (v.decode() if isinstance(v, bytes) else v.item() if hasattr(v, "item") else v)
                     for k, v in f.attrs.items()}
            if attrs.get("format") != FORMAT:
                raise AiftError(f"{path}: not an aift scores file (format {attrs.get('format')!r})")
            if attrs.get("version") != VERSION:
                raise AiftError(f"{path}: unsupported scores file version {attrs.get('version')!r}")
            ids, probs, pool = f["ids"][()], f["probs"][()], f["pool_ids"][()]
            worth = f["worth"][()] if "worth" in f else None
    except (OSError, KeyError) as e:
        raise AiftError(f"{path}: cannot read scores ({type(e).__name__}: {str(e)[:100]})") from None
    if ids.ndim != 1 or probs.shape[:1] != ids.shape or probs.ndim != 3:
        raise AiftError(f"{path}: ids {ids.shape} and probs {probs.shape} do not match")
    _check_scores(path, ids, probs, pool, worth, attrs)
    return Scores(path, str(attrs.get("kind")), ids.astype(np.int64), probs, pool.astype(np.int64), worth, attrs)


def _check_scores(path, ids, probs, pool, worth, attrs) -> None:
    """Every field of a scores file read back, checked (a tampered or damaged file is named, never used)."""
    for name, a in (("ids", ids), ("pool_ids", pool)):
        if a.ndim != 1 or a.dtype.kind not in "iu":
            raise AiftError(f"{path}: {name} must be a 1-D integer array; got dtype {a.dtype}, shape {a.shape}")
        if a.size and (a.min() < 0 or a.max() >= 2 ** 62):
            raise AiftError(f"{path}: {name} holds an id outside 0 .. 2**62 ({a.min()} .. {a.max()})")
    if probs.dtype.kind != "f":
        raise AiftError(f"{path}: probs must be floats; got dtype {probs.dtype}")
    if probs.size:
        bad = ~np.isfinite(probs) | (probs < 0) | (probs > 1)
        if bad.any():
            i = tuple(int(v) for v in np.argwhere(bad)[0])
            raise AiftError(f"{path}: probs{list(i)} = {probs[i].item()!r} is not a probability in [0, 1]")
    if worth is not None and (worth.shape != ids.shape or worth.dtype.kind != "f" or not np.isfinite(worth).all()):
        raise AiftError(f"{path}: worth must be {ids.size} finite numbers, one per id")
    kind = attrs.get("kind")
    if kind not in ("part", "merged"):
        raise AiftError(f"{path}: attribute kind must be 'part' or 'merged'; got {kind!r}")
    count, index = attrs.get("shard_count"), attrs.get("shard_index")
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_SHARDS:
        raise AiftError(f"{path}: attribute shard_count must be an integer in 1 .. {MAX_SHARDS}; got {count!r}")
    if kind == "part" and (not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < count):
        raise AiftError(f"{path}: attribute shard_index must be an integer in 0 .. {count - 1}; got {index!r}")
    if attrs.get("shard_mode") not in SHARD_MODES:
        raise AiftError(f"{path}: attribute shard_mode must be one of {', '.join(SHARD_MODES)}; "
                        f"got {attrs.get('shard_mode')!r}")


_SAME = ("store_sha256", "model_fingerprint", "split", "shard_count", "shard_mode")


def merge_shards(parts, out, strategy="aift") -> Path:
    """Merge part files into one scores file with per-candidate probabilities and worth.

    Checks that every part comes from the same store, model, pool and sharding, that no shard index is
    given twice, and that every pool id is in exactly one part: a missing or doubled id is a one-line
    :class:`AiftError` naming it (and the files). The worth is
    ``aift_tf.selection.strategy_scores(probs, strategy)``; ``strategy`` is a string (parsed once, here, and
    written to the file as given) or an ``aift_tf.selection.Strategy`` (written as its canonical string).

    Example:
    >>> merge_shards(sorted(Path(".").glob("part-*.h5")), "scores.h5")
    """
    from aift_tf.selection import as_strategy, strategy_scores

    spec = as_strategy(strategy)
    if spec.is_random:
        raise AiftError("strategy 'random' ranks by a seeded draw, not by scores; merge with another strategy")
    paths = [Path(p) for p in parts]
    if not paths:
        raise AiftError("no part files to merge")
    check_out(out, paths)
    read = [read_scores(p) for p in paths]
    first = read[0]
    for s in read:
        if s.kind != "part":
            raise AiftError(f"{s.path}: is a {s.kind} scores file, not a shard part")
        for key in _SAME:
            if s.attrs.get(key) != first.attrs.get(key):
                raise AiftError(f"{s.path}: {key} {s.attrs.get(key)!r} differs from {first.path}'s "
                                f"{first.attrs.get(key)!r}; all parts must score the same pool with the same model")
        if not np.array_equal(s.pool_ids, first.pool_ids):
            raise AiftError(f"{s.path}: its pool differs from {first.path}'s (another labeled set?)")
    seen = {}
    for s in read:
        i = s.attrs["shard_index"]
        if i in seen:
            raise AiftError(f"shard {i}/{first.attrs['shard_count']} is given twice: {seen[i]} and {s.path}")
        seen[i] = s.path
    ids = np.concatenate([s.ids for s in read])
    owner = np.concatenate([np.full(s.ids.size, k) for k, s in enumerate(read)])
    order = np.argsort(ids, kind="stable")
    ids, owner = ids[order], owner[order]
    dup = np.flatnonzero(ids[1:] == ids[:-1])
    if dup.size:
        j = dup[0]
        raise AiftError(f"candidate id {int(ids[j])} is in more than one part: {read[owner[j]].path} and "
                        f"{read[owner[j + 1]].path}")
    pool = first.pool_ids
    missing = pool[~np.isin(pool, ids)]
    if missing.size:
        given = ", ".join(str(i) for i in sorted(seen))
        raise AiftError(f"candidate id {int(missing[0])} of the pool is in no part ({missing.size} missing; "
                        f"shards given: {given} of {first.attrs['shard_count']})")
    extra = ids[~np.isin(ids, pool)]
    if extra.size:
        raise AiftError(f"candidate id {int(extra[0])} is in a part but not in the pool")
    probs = np.concatenate([s.probs for s in read])[order]
    worth = strategy_scores(probs, spec)
    attrs = {k: first.attrs[k] for k in _SAME}
    _write(out, {"ids": ids, "probs": probs, "pool_ids": pool, "worth": worth},
           {**attrs, "kind": "merged", "strategy": strategy if isinstance(strategy, str) else str(spec),
            "shard_index": -1})
    return Path(out)


def pool_probabilities(scores, pool_ids, store=None, model=None) -> np.ndarray:
    """The probabilities of a merged scores file for exactly ``pool_ids`` (in that order).

    Raises a one-line AiftError unless the file's ids equal the pool (a missing or extra candidate is
    named), and — when given — it was computed for ``store`` and with ``model``'s current weights.

    Args:
        scores: a :class:`Scores` (from :func:`read_scores`) or a path to a merged scores file.
        pool_ids: the unlabeled pool the learner queries from.
        store: the learner's store (checks ``store_sha256``).
        model: the learner's current model (checks ``model_fingerprint``).

    Example:
    >>> probs = pool_probabilities(read_scores("scores.h5"), learner.unlabeled_ids(), store, learner.model)
    """
    if not isinstance(scores, Scores):
        scores = read_scores(scores)
    where = scores.path
    if scores.kind != "merged":
        raise AiftError(f"{where}: is a {scores.kind} file; merge the parts first (aift score --merge)")
    if store is not None and scores.attrs.get("store_sha256") != store.sha256:
        raise AiftError(f"{where}: scores were computed for another store than {store.path}")
    if model is not None and scores.attrs.get("model_fingerprint") != model_fingerprint(model):
        raise AiftError(f"{where}: scores were computed with another model than the learner's current one "
                        f"(score the model of this round)")
    pool = np.asarray(pool_ids, dtype=np.int64)
    extra = scores.ids[~np.isin(scores.ids, pool)]
    if extra.size:
        raise AiftError(f"{where}: candidate id {int(extra[0])} is scored but not in the unlabeled pool "
                        f"(labeled since, or another split)")
    missing = pool[~np.isin(pool, scores.ids)]
    if missing.size:
        raise AiftError(f"{where}: candidate id {int(missing[0])} of the unlabeled pool has no score")
    if scores.ids.size != pool.size:
        raise AiftError(f"{where}: {scores.ids.size} scores for {pool.size} pool candidates (an id is repeated)")
    pos = np.searchsorted(scores.ids, pool) if np.all(scores.ids[1:] > scores.ids[:-1]) else None
    if pos is None:
        lookup = {int(i): k for k, i in enumerate(scores.ids)}
        pos = np.array([lookup[int(i)] for i in pool], dtype=np.int64)
    return scores.probs[pos]
