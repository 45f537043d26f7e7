"""Issue 12 part 3: several annotators. `aift query --annotators a,b --overlap F` deals a round out (one CSV and
labeling page each, a shared subset); `aift teach` records who labeled what; disagreements stay out of training
until `aift adjudicate` lists them and the adjudication is taught; `aift status` shows labels per annotator and
per class and Cohen's kappa per pair. The ledger is versioned: format-1 ledgers (older projects) still open.

Real TensorFlow on the tiny store of tests/test_aift_cli.py (small_cnn, 1 epoch).
"""

import json
import shutil

import pytest
from sklearn.metrics import cohen_kappa_score

from aift_tf.annotation.ledger import annotator_agreement, consensus, trained_by_round
from aift_tf.errors import AiftError
from aift_tf.project import assign_annotators, parse_annotators
from aift_tf.store import open_store
from test_aift_cli import CLASSES, aift, base, ledger, one_line_error, project, read_rows, write_rows  # noqa: F401


# ------------------------------------------------------------------------------------------------
# fast: the pure parts
# ------------------------------------------------------------------------------------------------


def test_assign_annotators_shares_a_subset_and_deals_the_rest_in_rank_order():
    ids = list(range(100, 120))
    shares, shared = assign_annotators(ids, ["alice", "bob"], 0.2, seed=[0, 1, 7])
    assert len(shared) == 4 and set(shared) <= set(ids)
    assert set(shares["alice"]) & set(shares["bob"]) == set(shared)
    assert set(shares["alice"]) | set(shares["bob"]) == set(ids)
    assert len(shares["alice"]) == len(shares["bob"]) == 12
    for s in shares.values():
        assert s == sorted(s, key=ids.index)  # rank order kept
    assert assign_annotators(ids, ["alice", "bob"], 0.2, seed=[0, 1, 7]) == (shares, shared)  # seeded
    assert assign_annotators(ids, ["alice"], 0.5, seed=0) == ({"alice": ids}, [])
    three, sh3 = assign_annotators(ids[:5], ["a", "b", "c"], 0.01, seed=1)
    assert len(sh3) == 1 and all(sh3[0] in v for v in three.values())
    assert parse_annotators(" alice, bob ") == ["alice", "bob"]
    for bad, words in (("alice,alice", "twice"), ("al ice", "'al ice'"), ("../x", "'../x'"), ("-a", "'-a'")):
        with pytest.raises(AiftError, match=words):
            parse_annotators(bad)


def test_consensus_disagreement_adjudication_and_kappa():
    e = [dict(id=1, label=0, annotator="a", round=1), dict(id=1, label=0, annotator="b", round=None),
         dict(id=2, label=1, annotator="a", round=None), dict(id=2, label=0, annotator="b", round=2),
         dict(id=3, label=1, annotator="a", round=2), dict(id=3, label=1, annotator="b", round=2),
         dict(id=4, label=0, annotator=None, round=2)]
    c = consensus(e)
    assert c.labels == {1: 0, 3: 1, 4: 0} and c.disagreements == {2: {"a": 1, "b": 0}}
    assert trained_by_round(e, 1) == {1: 0} and trained_by_round(e, 2) == {1: 0, 3: 1, 4: 0}
    g = [x for x in annotator_agreement(c, 2) if x["pair"] == ("a", "b")][0]
    assert g["n"] == 3 and g["agree"] == 2
    assert g["kappa"] == pytest.approx(cohen_kappa_score([0, 1, 1], [0, 0, 1]))
    e.append(dict(id=2, label=1, annotator="lead", adjudication=True, round=3))
    c = consensus(e)
    assert c.labels[2] == 1 and not c.disagreements and c.adjudicated == {2: 1}
    assert c.annotated["a"][2] == 1 and c.annotated["b"][2] == 0  # votes still count for kappa
    e.append(dict(id=2, label=0, annotator="a", relabel=True, round=None))  # a reopens it
    assert 2 in consensus(e).disagreements


# ------------------------------------------------------------------------------------------------
# a two-annotator round through the CLI
# ------------------------------------------------------------------------------------------------


def _truth(store):
    with open_store(store) as s:
        return s.labels.copy(), s.ids("train").tolist()


def _fill(csv_path, truth, flip=()):
    rows = read_rows(csv_path)
    for r in rows:
        i = int(r["id"])
        r["label"] = CLASSES[1 - truth[i]] if i in flip else CLASSES[truth[i]]
    write_rows(csv_path, rows)
    return {int(r["id"]): (1 - int(truth[int(r["id"])]) if int(r["id"]) in flip else int(truth[int(r["id"])]))
            for r in rows}


def test_two_annotators_disagreement_adjudication_and_kappa(project, base, tmp_path):
    truth, pool = _truth(base["store"])
    shutil.rmtree(project / "round-001")  # start from a project with a seed set of both classes
    seed = [next(i for i in pool if truth[i] == k) for k in (0, 1)]
    write_rows(tmp_path / "seed.csv", [{"id": i, "label": truth[i]} for i in seed])
    r = aift("teach", project, tmp_path / "seed.csv", "--annotator", "lead", "--quiet")
    assert r.exit_code == 0, r.stderr

    r = aift("query", project, "-n", 8, "--annotators", "alice,bob", "--overlap", "0.25")
    assert r.exit_code == 0, r.stderr
    rnd = project / "round-001"
    info = json.loads((rnd / "query.json").read_text())
    shares, shared = info["annotators"], info["shared"]
    assert sorted(shares) == ["alice", "bob"] and len(shared) == 2
    for name in ("alice", "bob"):
        assert [int(x["id"]) for x in read_rows(rnd / f"queries-{name}.csv")] == shares[name]
        page = (rnd / f"gallery-{name}.html").read_text()
        assert f'data-annotator="{name}"' in page and f'data-download="round-001-{name}-labels.csv"' in page
        assert f"gallery-{name}.html" in r.output
    assert not (rnd / "queries.csv").exists() and set(shares["alice"]) | set(shares["bob"]) == set(info["ids"])

    # alice: her share, annotator taken from the file name
    a = _fill(rnd / "queries-alice.csv", truth)
    r = aift("teach", project, rnd / "queries-alice.csv", "--quiet")
    assert r.exit_code == 0, r.stderr
    assert {e["annotator"] for e in ledger(project)} == {"lead", "alice"}
    # bob disagrees on one shared id
    disputed = shared[0]
    b = _fill(rnd / "queries-bob.csv", truth, flip={disputed})
    r = aift("teach", project, rnd / "queries-bob.csv")
    assert r.exit_code == 0, r.stderr
    assert f"1 label(s) disagree with another annotator (ids {disputed})" in r.stderr
    assert f"aift adjudicate {project}" in r.stderr
    led = ledger(project)
    assert [(e["id"], e["label"]) for e in led if e["annotator"] == "bob"] == sorted(b.items(), key=lambda x: shares["bob"].index(x[0]))
    st = json.loads(sorted((project / "checkpoints").glob("round-*"))[-1].joinpath("state.json").read_text())
    trained = dict(zip(st["labeled_ids"], st["labeled_labels"]))
    assert disputed not in trained  # held out of training (dropped although alice's label was trained)
    assert trained == {**{i: int(truth[i]) for i in seed}, **{i: v for i, v in {**a, **b}.items() if i != disputed}}

    out = aift("status", project).output
    k = cohen_kappa_score([a[i] for i in shared], [b[i] for i in shared], labels=[0, 1])
    assert f"agreement alice / bob: Cohen's kappa {k:.2f} on 2 shared candidate(s), 1 agree" in out or (
        "Cohen's kappa n/a on 2 shared candidate(s), 1 agree" in out)
    assert f"disagreements: 1 (ids {disputed}) held out of training; run `aift adjudicate {project}`" in out
    na = sum(1 for v in a.values() if v == 0)
    assert f"alice {len(a)} (negative {na}, positive {len(a) - na})" in out
    assert "round-001: 8 queried, 8 labeled (alice, bob; 2 shared)" in out

    # adjudicate: lists the disputed id (CSV + labeling page); a second call does not make a new folder
    r = aift("adjudicate", project)
    assert r.exit_code == 0, r.stderr
    adj = project / "adjudication-001"
    assert f"id {disputed}: alice={CLASSES[a[disputed]]}, bob={CLASSES[b[disputed]]}" in r.output
    rows = read_rows(adj / "queries.csv")
    assert [int(x["id"]) for x in rows] == [disputed] and rows[0]["votes"] == (
        f"alice: {CLASSES[a[disputed]]} | bob: {CLASSES[b[disputed]]}")
    page = (adj / "gallery.html").read_text()
    assert 'data-kind="adjudication"' in page and "1 disagreements to settle" in page
    r = aift("adjudicate", project)
    assert "already listed in adjudication-001" in r.output and not (project / "adjudication-002").exists()

    # the decision, downloaded from the page (its file name says what it answers), is taught: the id is trained
    dl = tmp_path / "adjudication-001-labels.csv"
    write_rows(dl, [{"id": disputed, "label": int(truth[disputed]), "note": "pulmonary vessel, not PE",
                     "annotator": "lead"}])
    r = aift("teach", project, dl)
    assert r.exit_code == 0, r.stderr
    assert "1 adjudication(s)" in r.output
    last = ledger(project)[-1]
    assert last["adjudication"] and last["annotator"] == "lead" and last["note"] == "pulmonary vessel, not PE"
    st = json.loads(sorted((project / "checkpoints").glob("round-*"))[-1].joinpath("state.json").read_text())
    assert dict(zip(st["labeled_ids"], st["labeled_labels"]))[disputed] == int(truth[disputed])
    out = aift("status", project).output
    assert "disagreements" not in out and "adjudicated 1" in out
    assert "no disagreements" in aift("adjudicate", project).output
    # re-teaching bob's sheet changes nothing (his vote is recorded already); the decision stands
    r = aift("teach", project, rnd / "queries-bob.csv")
    assert r.exit_code == 0 and "nothing new" in r.output

    # annotator names are checked, and a CSV's annotator column must agree with --annotator
    led_bytes = (project / "ledger.jsonl").read_bytes()
    bad = tmp_path / "x.csv"
    free = next(i for i in pool if i not in {e["id"] for e in ledger(project)})
    write_rows(bad, [{"id": free, "label": 0, "annotator": "alice"}])
    r = aift("teach", project, bad, "--annotator", "bob")
    assert r.exit_code == 2 and "annotator 'alice'" in one_line_error(r.stderr) and "--annotator bob" in r.stderr
    r = aift("teach", project, bad, "--annotator", "dr who")
    assert r.exit_code == 2 and "'dr who'" in one_line_error(r.stderr)
    write_rows(bad, [{"id": free, "label": 0, "annotator": "<b>x"}])
    r = aift("teach", project, bad)
    assert r.exit_code == 2 and "line 2" in one_line_error(r.stderr) and "'<b>x'" in r.stderr
    assert (project / "ledger.jsonl").read_bytes() == led_bytes
    r = aift("query", project, "-n", 2, "--overlap", "0.5")
    assert r.exit_code == 2 and "overlap 0.5 needs annotators" in one_line_error(r.stderr)


def test_format_1_ledger_still_opens_and_new_entries_are_format_2(project, base, tmp_path):
    truth, pool = _truth(base["store"])
    ids = [next(i for i in pool if truth[i] == k) for k in (0, 1)]
    old = [{"id": i, "label": int(truth[i]), "class": CLASSES[truth[i]], "round": 1, "query_round": None,
            "relabel": False, "time": "2025-01-01T00:00:00+00:00", "source": "old.csv", "line": k + 2}
           for k, i in enumerate(ids)]
    write_rows(tmp_path / "old.csv", [{"id": i, "label": int(truth[i])} for i in ids])
    r = aift("teach", project, tmp_path / "old.csv", "--quiet")  # trains round 1 (then made format 1 below)
    assert r.exit_code == 0, r.stderr
    (project / "ledger.jsonl").write_text("".join(json.dumps(e) + "\n" for e in old))  # as an older aift wrote it
    r = aift("status", project)
    assert r.exit_code == 0, r.stderr
    assert "labels: 2 (negative 1, positive 1)" in r.output and "(unnamed) 2" in r.output
    # the same annotator (nobody named) relabeling needs --relabel, as before
    write_rows(tmp_path / "flip.csv", [{"id": ids[0], "label": 1}])
    r = aift("teach", project, tmp_path / "flip.csv")
    assert r.exit_code == 2 and "--relabel" in one_line_error(r.stderr)
    neg = next(i for i in pool if truth[i] == 0 and i not in ids)
    write_rows(tmp_path / "flip.csv", [{"id": ids[0], "label": 1}, {"id": neg, "label": 0}])
    r = aift("teach", project, tmp_path / "flip.csv", "--relabel", "--quiet")
    assert r.exit_code == 0, r.stderr
    led = ledger(project)
    assert "v" not in led[0] and led[-2]["v"] == 2 and led[-2]["relabel"] and led[-2]["round"] == 2
    # a ledger from a newer aift is refused in one line
    (project / "ledger.jsonl").write_text(json.dumps(dict(old[0], v=3)) + "\n")
    r = aift("status", project)
    line = one_line_error(r.stderr)
    assert r.exit_code == 2 and "ledger.jsonl line 1" in line and "unsupported ledger format 3" in line
