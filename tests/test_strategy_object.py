"""The selection strategy as an object (issue 24, item 3: parse once, at the boundary).

`aift_tf.selection.Strategy` is parsed once from a strategy string (`Strategy.parse`, the same messages as
`parse_strategy` always gave), prints back as its canonical string, round-trips through get_config/from_config,
and is what `ActiveLearner.query` and the selection functions pass down: a string is parsed once at that
boundary and never again; a Strategy object is not parsed at all and selects exactly what its string does.
"""

import json
import warnings

import numpy as np
import pytest

from aift_tf import selection
from aift_tf.errors import AiftError
from aift_tf.selection import (
    AIFT,
    DEFAULT_MC_PASSES,
    DEFAULT_PREFILTER,
    STRATEGIES,
    Strategy,
    as_strategy,
    parse_strategy,
    select,
    select_batch,
    strategy_needs,
    strategy_scores,
)

# Every strategy the CLIs offer (aift --strategy, aift-sim --strategies, aift score --merge --strategy), in
# canonical form: the bare names, and each parameter form.
CANONICAL = list(STRATEGIES) + [
    "entropy@0.25", "diversity@0.5", "entropy+diversity@0.25", "entropy+diversity@0.3333333333333333",
    "bald@20", "mc-entropy@5", "aift+coreset@2", "aift+coreset@2.5",
]

# Other spellings of the same strategies: (text, canonical string)
SPELLINGS = [
    (" AIFT ", "aift"), ("Entropy@1/4", "entropy@0.25"), ("entropy@1", "entropy"), ("entropy @ 1.0", "entropy"),
    ("diversity@2/4", "diversity@0.5"), ("entropy+diversity@1/3", "entropy+diversity@0.3333333333333333"),
    ("bald@10", "bald"), ("MC-Entropy@20", "mc-entropy@20"), ("bald@20.0", "bald@20"),
    ("aift+coreset@3", "aift+coreset"), ("aift+coreset@5/2", "aift+coreset@2.5"), ("Random", "random"),
]

# The messages of the parser before Strategy existed (copied verbatim from it).
_VALID = ("random, entropy, diversity, entropy+diversity, aift, least-confidence, margin, mean-entropy, bald, "
          "mc-entropy, coreset, aift+coreset")
_UNKNOWN = ("unknown strategy {!r}; valid strategies: " + _VALID + " (entropy/diversity methods may add @ALPHA, "
            "e.g. entropy+diversity@0.25; bald/mc-entropy @T passes, e.g. bald@10; aift+coreset @W, e.g. "
            "aift+coreset@3)")
_NO_PARAM = ("strategy {!r}: {} takes no @ parameter (@ALPHA applies only to entropy, diversity, entropy+diversity, "
             "@T to bald, mc-entropy, @W to aift+coreset)")
MESSAGES = [
    ("bogus", _UNKNOWN.format("bogus")),
    ("", _UNKNOWN.format("")),
    ("entropy@0", "strategy 'entropy@0': alpha 0 is outside (0, 1]"),
    ("entropy@1.5", "strategy 'entropy@1.5': alpha 1.5 is outside (0, 1]"),
    ("entropy+diversity@-0.25", "strategy 'entropy+diversity@-0.25': alpha -0.25 is outside (0, 1]"),
    ("entropy@x", "strategy 'entropy@x': alpha 'x' is not a number"),
    ("entropy@", "strategy 'entropy@': alpha '' is not a number"),
    ("entropy@1/0", "strategy 'entropy@1/0': alpha '1/0' is not a number"),
    ("margin@0.5", _NO_PARAM.format("margin@0.5", "margin")),
    ("random@1", _NO_PARAM.format("random@1", "random")),
    ("coreset@2", _NO_PARAM.format("coreset@2", "coreset")),
    ("aift@0.5", "strategy 'aift@0.5': aift is entropy+diversity@0.25 and takes no @ALPHA; "
                 "write entropy+diversity@ALPHA instead"),
    ("aift@", "strategy 'aift@': aift is entropy+diversity@0.25 and takes no @ALPHA; "
              "write entropy+diversity@ALPHA instead"),
    ("bald@1", "strategy 'bald@1': passes T 1 must be an integer >= 2"),
    ("bald@2.5", "strategy 'bald@2.5': passes T 2.5 must be an integer >= 2"),
    ("bald@x", "strategy 'bald@x': passes T 'x' is not a number"),
    ("mc-entropy@1e400", "strategy 'mc-entropy@1e400': passes T '1e400' is not a number"),
    ("aift+coreset@0.5", "strategy 'aift+coreset@0.5': factor W 0.5 must be >= 1"),
    ("aift+coreset@inf", "strategy 'aift+coreset@inf': factor W 'inf' is not a number"),
    ("aift+coreset@x", "strategy 'aift+coreset@x': factor W 'x' is not a number"),
    (3, "strategy must be a string, got 3"),
    (None, "strategy must be a string, got None"),
    (["aift"], "strategy must be a string, got ['aift']"),
]


# ----------------------------------------------------------------------------- parse / str / config


@pytest.mark.parametrize("text", CANONICAL)
def test_parse_str_round_trip(text):
    s = Strategy.parse(text)
    assert str(s) == text
    assert Strategy.parse(str(s)) == s
    again = Strategy.from_config(json.loads(json.dumps(s.get_config())))  # JSON-able
    assert again == s and str(again) == text and hash(again) == hash(s)
    assert parse_strategy(text) == parse_strategy(s) == (s.method, s.parameter)
    assert as_strategy(s) is s
    with pytest.raises(dataclass_frozen_error()):
        s.name = "random"


def dataclass_frozen_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


@pytest.mark.parametrize("text, canonical", SPELLINGS)
def test_other_spellings_parse_to_the_canonical_strategy(text, canonical):
    assert str(Strategy.parse(text)) == canonical
    assert Strategy.parse(text) == Strategy.parse(canonical)
    assert parse_strategy(text) == parse_strategy(canonical)


def test_fields_and_needs():
    assert Strategy.parse("aift") == AIFT == Strategy("aift")
    assert (AIFT.name, AIFT.method, AIFT.alpha, AIFT.parameter) == ("aift", "entropy+diversity", 0.25, 0.25)
    assert Strategy.parse("entropy+diversity@0.25").method == AIFT.method  # same scores, other name
    assert Strategy.parse("entropy").alpha == 1.0 and Strategy.parse("bald").passes == DEFAULT_MC_PASSES
    assert Strategy.parse("aift+coreset").prefilter == DEFAULT_PREFILTER
    assert Strategy.parse("margin").parameter is None and Strategy.parse("margin").alpha is None
    want = {"random": set(), "aift": {"probs"}, "margin": {"probs"}, "bald@3": {"mc"}, "coreset": {"features"},
            "aift+coreset": {"probs", "features"}}
    for text, needs in want.items():
        s = Strategy.parse(text)
        assert s.needs == needs == strategy_needs(text) == strategy_needs(s)
        assert (s.needs_probs, s.needs_mc, s.needs_features) == ("probs" in needs, "mc" in needs,
                                                                 "features" in needs)
    assert Strategy.parse("random").is_random and not AIFT.is_random
    assert Strategy.parse("coreset").is_batch and Strategy.parse("aift+coreset").is_batch and not AIFT.is_batch


@pytest.mark.parametrize("text, message", MESSAGES)
def test_invalid_strings_give_the_same_messages_as_before(text, message):
    for parse in (Strategy.parse, parse_strategy, as_strategy, strategy_needs):
        with pytest.raises(AiftError) as e:
            parse(text)
        assert str(e.value) == message


def test_built_field_by_field_is_checked_like_a_string():
    assert Strategy("entropy", alpha=0.5) == Strategy.parse("entropy@0.5")
    assert Strategy("Bald", passes=20) == Strategy.parse("bald@20")
    assert Strategy("aift+coreset", prefilter=2) == Strategy.parse("aift+coreset@2")
    assert Strategy("entropy") == Strategy.parse("entropy") and Strategy("margin") == Strategy.parse("margin")
    for kwargs, message in [
        (dict(name="entropy", alpha=1.5), "strategy 'entropy@1.5': alpha 1.5 is outside (0, 1]"),
        (dict(name="bald", passes=1), "strategy 'bald@1': passes T 1 must be an integer >= 2"),
        (dict(name="aift+coreset", prefilter=0.5), "strategy 'aift+coreset@0.5': factor W 0.5 must be >= 1"),
        (dict(name="random", alpha=0.5), "strategy 'random' takes no alpha"),
        (dict(name="entropy", passes=3), "strategy 'entropy' takes no passes"),
        (dict(name="entropy", alpha="x"), "strategy 'entropy': alpha 'x' is not a number"),
        (dict(name="aift", alpha=0.5), "strategy 'aift' is entropy+diversity@0.25"),
        (dict(name="entropy@0.5"), "unknown strategy 'entropy@0.5'"),
        (dict(name="bogus"), "unknown strategy 'bogus'"),
    ]:
        with pytest.raises(AiftError) as e:
            Strategy(**kwargs)
        assert str(e.value).startswith(message)
    with pytest.raises(AiftError, match="unknown strategy config key 'omega'"):
        Strategy.from_config({"name": "aift", "omega": 2})
    with pytest.raises(AiftError, match="needs a 'name'"):
        Strategy.from_config({})


# ----------------------------------------------------------------------------- parse once


@pytest.fixture
def count_parses(monkeypatch):
    """How many times the strategy grammar runs (every parse goes through selection._parse_fields)."""
    calls = []
    real = selection._parse_fields

    def counted(text):
        calls.append(text)
        return real(text)

    monkeypatch.setattr(selection, "_parse_fields", counted)
    return calls


def _arrays(n=30, m=4, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.random((n, m))
    probs = np.stack([1 - p, p], axis=-1)
    mc = np.stack([np.stack([1 - q, q], axis=-1) for q in rng.random((3, n, m))])
    return probs, mc, rng.normal(size=(n, 5)), rng.normal(size=(3, 5))


def test_the_selection_functions_parse_a_string_once(count_parses):
    probs, mc, x, c = _arrays()
    for text in ("aift", "entropy@0.5", "margin", "random", "bald@3", "coreset", "aift+coreset@2"):
        count_parses.clear()
        select_batch(text, 4, n=30, probs=probs, mc_probs=mc, features=x, centers=c, omega=2.0, seed=1)
        assert count_parses == [text]
        s = Strategy.parse(text)
        count_parses.clear()
        select_batch(s, 4, n=30, probs=probs, mc_probs=mc, features=x, centers=c, omega=2.0, seed=1)
        assert count_parses == []  # an object is never parsed again
    count_parses.clear()
    strategy_scores(probs, "entropy@0.5")
    strategy_scores(probs, AIFT)
    assert count_parses == ["entropy@0.5"]


@pytest.mark.parametrize("text", ["aift", "entropy@0.5", "diversity", "margin", "least-confidence",
                                  "mean-entropy", "random", "bald@3", "mc-entropy", "coreset", "aift+coreset@2"])
@pytest.mark.parametrize("omega", [1.0, 2.5])
def test_select_batch_object_and_string_and_checked_pick_the_same(text, omega):
    probs, mc, x, c = _arrays(seed=3)
    groups = np.arange(30) % 7
    s = Strategy.parse(text)
    for seed in (0, 5):
        for cap in (None, 2):
            kw = dict(n=30, probs=probs, mc_probs=mc, features=x, centers=c, omega=omega, seed=seed,
                      groups=groups, max_per_group=cap)
            a_idx, a_sc = select_batch(text, 6, **kw)
            b_idx, b_sc = select_batch(s, 6, **kw)
            c_idx, c_sc = select_batch(s, 6, checked=True, **kw)
            for idx, sc in ((b_idx, b_sc), (c_idx, c_sc)):
                np.testing.assert_array_equal(idx, a_idx)
                np.testing.assert_array_equal(sc, a_sc)


def test_query_size_keyword_and_the_deprecated_alias_b():
    s = np.array([0.1, 0.9, 0.5, 0.9, 0.3])
    want = select(s, 2).tolist()
    assert select(s, query_size=2).tolist() == want
    with pytest.warns(DeprecationWarning, match="query_size"):
        assert select(s, b=2).tolist() == want
    with pytest.raises(TypeError, match="both"):
        select(s, 2, b=2)
    with pytest.raises(AiftError, match="budget 6 is larger than the pool of 5 candidates"):  # message unchanged
        select(s, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        probs, _, x, c = _arrays()
        np.testing.assert_array_equal(select_batch("aift", b=3, probs=probs)[0], select_batch("aift", 3, probs=probs)[0])
        np.testing.assert_array_equal(selection.kcenter_greedy(x, b=3, centers=c)[0],
                                      selection.kcenter_greedy(x, 3, centers=c)[0])


# ----------------------------------------------------------------------------- the learner: the boundary


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from aift_tf.store import open_store, write_store
    from conftest import make_separable_arrays

    a = make_separable_arrays(n=40, m=4, size=16, groups=8)
    path = tmp_path_factory.mktemp("strategy") / "s.h5"
    write_store(path, a["patches"], a["labels"], a["groups"], a["split"], app="t", class_names=["n", "p"])
    with open_store(path) as st:
        yield st


def _learner(store, strategy="aift", **kw):
    from aift_tf.finetune import FineTuneConfig
    from aift_tf.learner import ActiveLearner

    return ActiveLearner(store, model_name="small_cnn", strategy=strategy, trainable="top", cache_trunk=True,
                         finetune=FineTuneConfig(epochs=1, steps_per_epoch=2, seed=0), seed=0, val_split=None, **kw)


def test_learner_query_object_and_string_select_the_same_and_parse_once(store, count_parses):
    lr = _learner(store)
    lr.teach(*_cold_start(lr, store))
    for text in ("aift", "entropy@0.5", "margin", "random", "bald@3", "coreset", "aift+coreset@2"):
        s = Strategy.parse(text)
        for omega in (1.0, 2.0):
            count_parses.clear()
            by_text = lr.query(4, strategy=text, omega=omega, rng_seed=[0, 1])
            assert count_parses == [text], f"{text}: parsed {len(count_parses)} times in one query"
            count_parses.clear()
            by_object = lr.query(4, strategy=s, omega=omega, rng_seed=[0, 1])
            assert count_parses == []
            np.testing.assert_array_equal(by_object.ids, by_text.ids)
            np.testing.assert_array_equal(by_object.scores, by_text.scores)
    count_parses.clear()
    lr.query(4, rng_seed=[0, 1])  # the learner's own strategy was parsed when it was set
    assert count_parses == []


def _cold_start(lr, store):
    pool = lr.unlabeled_ids()
    y = store.labels[pool]
    ids = np.r_[pool[y == 0][:2], pool[y == 1][:2]]
    return ids, store.labels[ids]


def test_same_seed_same_selection(store):
    for text in ("aift", "random", "entropy@0.5"):
        a, b = _learner(store, text, omega=2.0), _learner(store, Strategy.parse(text), omega=2.0)
        qa, qb = a.query(5), b.query(5)  # the learners' own RNGs, seeded alike
        np.testing.assert_array_equal(qa.ids, qb.ids)
        np.testing.assert_array_equal(qa.scores, qb.scores)
        np.testing.assert_array_equal(a.query(5).ids, b.query(5).ids)  # and the next query too
        np.testing.assert_array_equal(a.query(5, rng_seed=7).ids, a.query(5, rng_seed=7).ids)


def test_learner_strategy_attribute_and_config(store):
    lr = _learner(store, " Entropy@1/2 ")
    assert lr.strategy == " Entropy@1/2 "  # kept as given: get_config, state.json and project files unchanged
    assert lr.parsed_strategy == Strategy.parse("entropy@0.5")
    assert lr.get_config()["strategy"] == " Entropy@1/2 "
    lr.strategy = Strategy("diversity", alpha=0.25)  # an object is stored as its canonical string
    assert lr.strategy == "diversity@0.25" and lr.parsed_strategy == Strategy.parse("diversity@1/4")
    json.dumps(lr.get_config())
    lr.strategy = "random"  # assigning parses anew
    assert lr.parsed_strategy.is_random
    with pytest.raises(AiftError) as e:
        lr.strategy = "bogus"
    assert str(e.value) == _UNKNOWN.format("bogus")
    assert lr.strategy == "random"  # unchanged by the refused assignment
    with pytest.raises(AiftError) as e:
        _learner(store, "entropy@2")
    assert str(e.value) == "strategy 'entropy@2': alpha 2 is outside (0, 1]"


def test_learner_checks_query_size_and_omega_once_with_one_message_form(store):
    lr = _learner(store)
    left = lr.unlabeled_ids().size
    q = lr.query(3, rng_seed=1)
    want = q.ids
    assert q.strategy == AIFT and q.omega == 1.0 and len(q) == 2  # what the query used; still unpacks as a pair
    q = lr.query(3, strategy="random", omega="2", rng_seed=1)
    assert q.strategy == Strategy.parse("random") and q.omega == 2.0 and isinstance(q.omega, float)
    np.testing.assert_array_equal(lr.query(query_size=3, rng_seed=1).ids, want)
    np.testing.assert_array_equal(lr.query(np.int64(3), rng_seed=1).ids, want)
    with pytest.warns(DeprecationWarning, match="query_size"):
        np.testing.assert_array_equal(lr.query(b=3, rng_seed=1).ids, want)
    with pytest.raises(TypeError, match="both"):
        lr.query(3, b=3)
    for bad in (0, -1, 2.5, "x", None):
        with pytest.raises(AiftError, match=r"^query_size must be an integer >= 1; got "):
            lr.query(bad)
    with pytest.raises(AiftError) as e:
        lr.query(left + 1)
    assert str(e.value) == f"query_size {left + 1} is larger than the {left} unlabeled candidates left in the pool"
    with pytest.raises(AiftError) as e:
        lr.query(1, omega=0.5)
    assert str(e.value) == "omega must be a number >= 1; got 0.5"
    lr.omega = 0.5  # an attribute set by hand is checked by the query too
    with pytest.raises(AiftError, match="omega must be a number >= 1; got 0.5"):
        lr.query(1)
