"""The simulation loop behind `aift-sim`: active, incremental fine-tuning against an oracle.

A run compares selection strategies (AIFT, the two random baselines, others) on one candidate store
whose pool labels are known. Per paired seed k:

1. **full training** (the ceiling): M0 fine-tuned on the whole pool with the rounds' recipe until the
   validation AUC stops improving (it may use the validation labels: it is the reference, not a
   strategy charged for labels). Once every seed has it, the savings target
   ``mean full-training AUC − target_delta`` is fixed in ``target.json`` from full training alone
   (with ``workers`` > 1 the last full-training job may still run beside the first strategies; no
   strategy's result ever enters the target);
2. every strategy: round 1 teaches the seed's cold-start random set (shared by every strategy of the
   seed; :func:`simulate.config.draw_initial`), then each round queries ``query_size`` candidates,
   the oracle reveals their labels, the model is fine-tuned (learning strategy) and evaluated on the
   test split. ``random`` queries at random with the strategies' learning (continual: isolates the
   selection); ``random-rft`` queries at random and restarts from M0 every round (the journal's RFT);
3. past the planned rounds, every strategy x seed (the random baselines too) keeps querying until the
   isotonic fit of its curve crosses the target (:func:`simulate.config.crossed`, the report's rule) or it
   has ``plan.max_labels`` labels, each extra round :func:`simulate.config.extra_round_size` candidates
   (the same label counts for every strategy of a seed). These rounds read target.json, so a job that
   gets there before full training has finished waits for it (with ``workers`` > 1).

Python API::

    from simulate.config import SimConfig
    from simulate.experiment import run_experiment
    from simulate.report import build_report
    done = run_experiment(SimConfig(data="pool.h5", strategies=("aift", "random"), rounds=3), out="runs/demo")
    summary = build_report(done["out"], runtime=done["runtime"])
    done = run_experiment(None, out="runs/demo", resume=True)      # continue after a crash

Around the loop: :mod:`simulate.plan` builds, writes and reads back the run's configuration (one frozen
:class:`simulate.plan.RunConfig`), :mod:`simulate.jobs` lists the jobs and their fine-tuning recipes,
:mod:`simulate.m0` chooses M0, :mod:`simulate.progress` shows and logs. The run folder's layout is
:mod:`simulate.run_folder`'s. Every random choice depends only on (seed,
round): queries on the learner's saved RNG, fine-tuning on ``seed + 1000 * round``, the initial set
on the seed, so a resumed run reproduces the uninterrupted one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import numpy as np

from aift_tf.errors import AiftError
from simulate import run_folder as rf
from simulate.config import SimConfig, crossed, draw_initial, extra_round_size, selection_of
from simulate.jobs import (
    EARLY_STOPPING_CHECKS,  # noqa: F401 (re-exported: the recipe's constants were simulate.experiment's)
    EARLY_STOPPING_PATIENCE,  # noqa: F401
    FULL_MONITOR,
    full_finetune,
    is_full_training,
    job_list,
    job_names,
    learning_for,
    planned_rounds,
    round_finetune,
    total_units,
)
from simulate.m0 import resolve_m0  # noqa: F401 (re-exported: simulate.experiment.resolve_m0)
from simulate.plan import (  # noqa: F401 (re-exported: simulate.experiment's names before the split)
    RunConfig,
    default_out_dir,
    froc_applies,
    new_run,
    new_run_config,
    read_run,
    resumed_run,
    store_path_for,
)
from simulate.progress import (  # noqa: F401 (tensorboard_callback re-exported)
    LineRecorder,
    Progress,
    quiet_warnings,
    tensorboard_callback,
    write_eval_scalars,
)
from simulate.run_folder import FROC_RATES, FULL, SCRATCH

#: seconds between two looks for target.json by a job that needs it before full training has finished
TARGET_POLL_SECONDS = 1.0


# ----------------------------------------------------------------------------------------------
# the experiment


class Experiment:
    """One run folder: the jobs (full training, scratch, strategy x seed) and their state."""

    def __init__(self, out: Path, run: RunConfig, store, progress: Progress, trunk_cache_dir=None, workers: int = 1,
                 worker: bool = False):
        self.out = Path(out)
        self.workers = int(workers)
        self.worker = bool(worker)  # a worker process: the parent writes rounds.csv and the curves
        self.run_config = run
        self.cfg = run.settings
        self.plan = run.plan
        self.m0 = run.m0
        self.store = store
        self.progress = progress
        self.froc = bool(run.data["froc"])
        self.seeds = list(range(int(self.plan.seeds)))
        self.full_seeds = self.seeds[: int(self.plan.full_seeds)]
        self.rows = {}  # (job, seed) -> rows
        self.curves = {}  # (job, seed) -> full-training curve rows
        self._m0_eval = {}  # seed -> evaluation of M0 (shared by the strategies)
        self.trunk_cache_dir = trunk_cache_dir
        self.distribution = None
        if self.cfg.distribute != "none":  # created before any other TensorFlow work (multi-worker needs it)
            from aift_tf.distribute import get_distribution

            self.distribution = get_distribution(self.cfg.distribute)

    # -------------------------------------------------------------- helpers
    def _speed_options(self, trainable) -> dict:
        """ActiveLearner options that change speed only: frozen-trunk cache (one side file per store
        and trunk, shared by every strategy and seed) and the distribution (tf.distribute)."""
        cache = False
        if self.cfg.cache_trunk and trainable != "all":
            cache = str(self.trunk_cache_dir) if self.trunk_cache_dir is not None else True
        return {"cache_trunk": cache, "distribute": self.distribution}

    def _evaluate(self, learner) -> dict:
        from aift_tf.metrics import class_recall, froc

        ev = learner.evaluate("test")
        ids = ev["ids"]
        labels = self.store.labels[ids]
        groups = self.store.groups[ids]
        out = {"auc": float(ev["auc"]), "ids": ids, "probability": np.asarray(ev["probability"], np.float64),
               "labels": labels, "groups": groups, "sens": [None] * len(FROC_RATES),
               "class_recall": class_recall(labels, ev["probability"], self.store.num_classes)}
        if self.froc and labels.sum() > 0:
            r = froc(out["probability"], labels, groups, fps_per_group=FROC_RATES)
            out["sens"] = [float(x) for x in r["sensitivity"]]
        return out

    def _stop_ids(self, seed):
        """The seed's stop set (with --stop), shared by every strategy of the seed."""
        from aift_tf.stopping import draw_stop_set

        return draw_stop_set(self.store.ids("train"), seed=int(seed), size=self.plan.stop["stop_set_size"])

    def _stop_check(self, learner, seed, previous):
        """(stop-set classes of the current model, kappa vs `previous`) with --stop; (None, None) without."""
        if not self.plan.stop:
            return None, None
        from aift_tf.stopping import agreement, predicted_classes

        pred = predicted_classes(learner.predict(self._stop_ids(seed)))
        kappa = None if previous is None else agreement(pred, previous, self.store.num_classes)
        return pred, kappa

    def _row(self, strategy, seed, rnd, labels, positives, ev, finetune_s, scoring_s, stop_kappa=None,
             labeled=()):
        """One rounds.csv row; ``labeled`` = the labels of the labeled candidates so far (per-class counts)."""
        counts = np.bincount(np.asarray(labeled, dtype=np.int64), minlength=self.store.num_classes)
        return {
            "strategy": strategy, "seed": int(seed), "round": int(rnd), "labels": int(labels),
            "positives_found": int(positives), "test_auc": float(ev["auc"]),
            "sens_fp1": ev["sens"][0], "sens_fp2": ev["sens"][1], "sens_fp3": ev["sens"][2],
            "finetune_seconds": round(float(finetune_s), 3), "scoring_seconds": round(float(scoring_s), 3),
            "stop_kappa": None if stop_kappa is None else float(stop_kappa),
            "class_recall": rf.per_class_text(ev["class_recall"]), "class_labels": rf.per_class_text(counts),
        }

    def all_rows(self) -> list:
        order = job_names(self.cfg)
        keys = sorted(self.rows, key=lambda k: (order.index(k[0]), k[1]))
        return [row for k in keys for row in sorted(self.rows[k], key=lambda r: r["round"])]

    def flush_csv(self):
        if not self.worker:
            rf.write_rounds(self.out, self.all_rows())

    def flush_curves(self):
        if self.worker:
            return
        keys = sorted(self.curves, key=lambda k: (k[0], k[1]))
        rf.write_training_curves(self.out, [row for k in keys for row in self.curves[k]])

    def initial_ids(self, seed):
        """The cold-start set of a seed: the same for every strategy (see simulate.config.draw_initial)."""
        pool = self.store.ids("train")
        return draw_initial(pool, self.store.labels[pool], seed, self.plan.initial["minimum"],
                            self.plan.initial["per_class"], self.store.num_classes)

    def _label(self, strategy, seed):
        return f"{strategy} s{seed}"

    def n_rounds(self):
        """Planned learner rounds of a strategy (:func:`simulate.jobs.planned_rounds`; more follow until the
        target is crossed: :meth:`next_size`)."""
        return planned_rounds(self.plan)

    def next_size(self, rows, target) -> int:
        """Candidates the next round of a strategy x seed queries (0 = the job is done).

        ``rows`` are the job's rows so far (round 0 = M0 first). The planned rounds query ``query_size``;
        past them a round runs only while the curve has not crossed ``target`` (target.json's AUC, the
        report's isotonic first-crossing rule) and fewer than ``max_labels`` labels are spent
        (:func:`simulate.config.extra_round_size`). ``target`` None = not known yet (only asked past the
        planned rounds).
        """
        if len(rows) - 1 < self.n_rounds():  # rounds finished (round 0 = M0) < planned
            return int(self.plan.query_size)
        if target is None:
            raise AiftError("the target is needed past the planned rounds")
        if crossed(rows, float(target["target_auc"])):
            return 0
        return extra_round_size(self.plan, int(rows[-1]["labels"]))

    # -------------------------------------------------------------- jobs
    def load_existing(self):
        """Read every job's rows from its latest state (for resume and for the progress total)."""
        done = 0
        for seed in self.seeds:
            for job in job_names(self.cfg):
                if job in (FULL, SCRATCH) and seed not in self.full_seeds:
                    continue
                sdir = rf.state_dir(self.out, job, seed)
                rf.clean_temporaries(sdir)
                r, p = rf.latest_round(sdir)
                if p is not None:
                    self.rows[(job, seed)] = rf.read_rows(p)
                    curve = rf.read_info(p).get("curve")
                    if curve:
                        self.curves[(job, seed)] = curve
                    done += r
        return done

    def total_units(self):
        return total_units(self.cfg, self.plan, self.seeds, self.full_seeds)

    def run(self):
        quiet_warnings(self.progress.quiet)
        if self.workers > 1:
            return self._run_parallel()
        # the ceiling first: the savings target is fixed from it alone
        for seed in self.full_seeds:
            self.run_full(FULL, seed)
            if self.cfg.scratch:
                self.run_full(SCRATCH, seed)
        self.fix_target()
        for seed in self.seeds:
            for strategy in self.cfg.strategies:
                self.run_active(strategy, seed)

    def wait_target(self) -> dict:
        """target.json, once full training has finished (rounds past the planned ones need it).

        The sequential loop fixed it before the strategies; a worker process whose job gets here while
        a full-training job still runs waits for the parent to write it, or writes it itself (the same
        file, from the full-training jobs' saved rows only) once every full-training job has saved.
        """
        while True:
            target = rf.read_target(self.out)
            if target is not None:
                return target
            full = {}
            for s in self.full_seeds:
                _, latest = rf.latest_round(rf.state_dir(self.out, FULL, s))
                if latest is None:
                    break
                full[s] = rf.read_rows(latest)
            else:
                for s, rows in full.items():
                    self.rows.setdefault((FULL, s), rows)
                return self.fix_target()
            time.sleep(TARGET_POLL_SECONDS)

    def job_list(self) -> list:
        """Every (job, seed) of the run in the sequential order (:func:`simulate.jobs.job_list`)."""
        return job_list(self.cfg, self.seeds, self.full_seeds)

    def job_pending(self, name, seed) -> bool:
        """Whether (job, seed) still has rounds to run or (first seed) its final export to write."""
        r, latest = rf.latest_round(rf.state_dir(self.out, name, seed))
        if is_full_training(name):
            return latest is None
        if latest is None or (self._wants_export(seed) and not self._final_export_done(name, seed)):
            return True
        rows = rf.read_rows(latest)
        if r < self.n_rounds():
            return True
        target = rf.read_target(self.out)
        return target is None or self.next_size(rows, target) > 0

    def run_job(self, name, seed) -> dict:
        """Run one job (in a worker process) and return its rows, curve and progress lines."""
        self.progress.lines = []
        (self.run_full if is_full_training(name) else self.run_active)(name, seed)
        return {"rows": self.rows[(name, seed)], "curve": self.curves.get((name, seed)),
                "lines": list(self.progress.lines)}

    def _run_parallel(self):
        """Every pending job on `workers` processes (:mod:`simulate.parallel`); the target is fixed as soon
        as the full-training jobs are done, from them alone (strategies never enter it)."""
        from simulate.parallel import run_jobs

        full_left = {(n, s) for n, s in self.job_list() if n == FULL}

        def on_done(job, result):
            name, seed = job
            self.rows[job] = result["rows"]
            if result["curve"]:
                self.curves[job] = result["curve"]
                self.flush_curves()
            self.flush_csv()
            for msg in result["lines"]:
                self.progress.line(msg)
            units = 1 if is_full_training(name) else len(result["rows"]) - 1
            self.progress.advance(max(0, units - self._units_done.get(job, 0)))
            full_left.discard(job)
            if not full_left:
                self.fix_target()

        self._units_done = {}
        pending = []
        for name, seed in self.job_list():
            if self.job_pending(name, seed):
                pending.append((name, seed))
                self._units_done[(name, seed)] = len(self.rows.get((name, seed), [])[1:])
            elif name == FULL:
                full_left.discard((name, seed))
        if not full_left:
            self.fix_target()
        if pending:
            run_jobs(pending, min(self.workers, len(pending)), make_worker=worker_experiment, out=self.out,
                     store_path=self.store.path, trunk_dir=self.trunk_cache_dir, on_done=on_done)
        self.fix_target()

    def fix_target(self) -> dict:
        """target.json: mean full-training test AUC over the seeds − target_delta (written once)."""
        target = rf.read_target(self.out)
        if target is not None:
            if not getattr(self, "_target_said", False) and not self.worker:
                self._target_said = True
                self.progress.line(f"target AUC {target['target_auc']:.4f} (full training "
                                   f"{target['full_auc_mean']:.4f} − {target['delta']:g})")
            return target
        aucs = [self.rows[(FULL, s)][0]["test_auc"] for s in self.full_seeds]
        mean = float(np.mean(aucs))
        delta = float(self.plan.target_delta)
        target = {"target_auc": mean - delta, "full_auc_mean": mean, "delta": delta, "seeds": len(aucs),
                  "rule": f"mean full-training test AUC over {len(aucs)} seeds − {delta:g}, fixed from full "
                          f"training alone"}
        rf.write_target(self.out, target)
        if not self.worker:  # a worker that wrote it leaves the line to the parent (it prints it once)
            self._target_said = True
            self.progress.line(f"target AUC {target['target_auc']:.4f} (full training {mean:.4f} − {delta:g})")
        return target

    def _tb_eval(self, strategy, seed, row):
        write_eval_scalars(rf.eval_tb_dir(self.out, strategy, seed), row)

    def _export(self, learner, strategy, seed, target: Path, rnd):
        from aift_tf.export import export_model

        provenance = {
            "strategy": strategy, "learning": learner.learning, "round": int(rnd), "seed": int(seed),
            "labeled": int(learner.labeled_ids.size), "data": self.run_config.data["path"],
            "data_sha256": self.run_config.data["sha256"], "model": self.cfg.model,
            "m0": self.m0.get("path") or self.m0.get("source"), "run": str(self.out),
        }
        target.parent.mkdir(parents=True, exist_ok=True)
        export_model(learner.model, target, patches_per_candidate=int(self.store.m), provenance=provenance)

    def _final_export_done(self, strategy, seed):
        return rf.final_export_done(self.out, strategy, seed)

    def _wants_export(self, seed):
        """Final models are exported for the first seed (every seed with --export-every-round): a
        SavedModel export costs more than a round on a CPU."""
        return self.cfg.export and (seed == self.seeds[0] or self.cfg.export_every_round)

    def _do_final_export(self, learner, strategy, seed):
        """Export the final model into models/<strategy>/seed<k>/ (next to any round-NNN/ exports)."""
        self._export(learner, strategy, seed, rf.final_export_staging(self.out, strategy, seed), learner.round)
        rf.commit_final_export(self.out, strategy, seed, learner.round)

    def _callbacks(self, job, seed, rnd, label):
        cbs = [tensorboard_callback(rf.round_tb_dir(self.out, job, seed, rnd))]
        bar = self.progress.epochs_callback(label)
        if bar is not None:
            cbs.append(bar)
        return cbs

    def _start_active(self, strategy, seed, sdir, latest, label):
        """(learner, rows, stop-set classes) of a strategy x seed: resumed from its latest saved round, or
        built from M0 with round 0 (M0's evaluation) saved."""
        from aift_tf.learner import ActiveLearner

        cb = self.progress.stage(label)
        cfg = self.cfg
        if latest is not None:
            learner = ActiveLearner.load(rf.learner_dir(latest), self.store, progress=cb,
                                         **self._speed_options(cfg.trainable))
            rows = rf.read_rows(latest)
            stop_pred = rf.read_stop_predictions(latest)
            if stop_pred is None:  # a run folder from before --stop saved them: recompute (same model)
                stop_pred, _ = self._stop_check(learner, seed, None)
        else:
            val = self.plan.early_stopping_split if cfg.early_stopping else None
            learner = ActiveLearner(
                self.store, model_name=cfg.model, weights=self.m0["weights"], trainable=cfg.trainable,
                strategy=selection_of(strategy), learning=learning_for(cfg, strategy), omega=cfg.omega,
                max_per_group=cfg.max_per_group,
                finetune=round_finetune(cfg, self.plan, seed), seed=seed, progress=cb, val_split=val,
                **self._speed_options(cfg.trainable),
            )
            # every strategy of a seed starts from the same M0: evaluate it once per seed
            ev = self._m0_eval.get(seed)
            if ev is None:
                ev = self._m0_eval[seed] = self._evaluate(learner)
            rows = [self._row(strategy, seed, 0, 0, 0, ev, 0.0, 0.0)]
            stop_pred, _ = self._stop_check(learner, seed, None)
            rf.save_round(sdir, 0, rows, learner, ev, stop_predictions=stop_pred)
            self.rows[(strategy, seed)] = rows
            self.flush_csv()
            self._tb_eval(strategy, seed, rows[-1])
            self.progress.line(f"{strategy:>24} seed {seed} round 0: {0:5d} labels  AUC {ev['auc']:.4f}  (M0)")
        return learner, rows, stop_pred

    def run_active(self, strategy, seed):
        """Run (or continue) a strategy x seed: round 0 = M0, round 1 the cold-start set, then queries until the
        planned rounds are done and the target is crossed (or the label cap is reached); final export."""
        cfg = self.cfg
        sdir = rf.state_dir(self.out, strategy, seed)
        r, latest = rf.latest_round(sdir)
        label = self._label(strategy, seed)
        need_export = self._wants_export(seed) and not self._final_export_done(strategy, seed)
        if latest is not None and not need_export and not self.job_pending(strategy, seed):
            self.rows[(strategy, seed)] = rf.read_rows(latest)
            return
        learner, rows, stop_pred = self._start_active(strategy, seed, sdir, latest, label)
        while True:
            rnd = learner.round + 1
            size = self.next_size(rows, None if rnd <= self.n_rounds() else self.wait_target())
            if size > 0 and rnd > self.n_rounds():
                size = self._fillable(learner, size)
            if size < 1:
                break
            if rnd == 1:  # the cold-start set: shared by every strategy of the seed
                ids, scoring = self.initial_ids(seed), 0.0
            else:
                q = learner.query(size)
                ids, scoring = q.ids, float(q.seconds)
            rec = learner.teach(ids, self.store.labels[ids], callbacks=self._callbacks(strategy, seed, rnd, label),
                                verbose=0)
            ev = self._evaluate(learner)
            stop_pred, kappa = self._stop_check(learner, seed, stop_pred)
            row = self._row(strategy, seed, rnd, rec["labels"], rec["positives"], ev,
                            rec["finetune"].get("seconds", 0.0), scoring, stop_kappa=kappa,
                            labeled=learner.labeled_labels)
            rows = rows + [row]
            if cfg.export_every_round:  # before the state: a crash in between re-does (and re-exports) the round
                self._export(learner, strategy, seed, rf.round_export_dir(self.out, strategy, seed, rnd), rnd)
            self._tb_eval(strategy, seed, row)
            rf.save_round(sdir, rnd, rows, learner, ev, stop_predictions=stop_pred)
            self.rows[(strategy, seed)] = rows
            self.flush_csv()
            self.progress.advance()
            self.progress.line(f"{strategy:>24} seed {seed} round {rnd}: {row['labels']:5d} labels  "
                               f"AUC {row['test_auc']:.4f}  positives {row['positives_found']}")
        if need_export:
            self._do_final_export(learner, strategy, seed)

    def _fillable(self, learner, size) -> int:
        """``size`` limited to what a query can take: the unlabeled pool, and with --max-per-group at most
        K candidates of each group."""
        left = learner.unlabeled_ids()
        if self.cfg.max_per_group is not None and left.size:
            _, counts = np.unique(self.store.groups[left], return_counts=True)
            return int(min(size, np.minimum(counts, self.cfg.max_per_group).sum()))
        return int(min(size, left.size))

    def run_full(self, name, seed):
        """Full training (M0 fine-tuned on the whole pool) or training from scratch (random
        initialisation, every layer and BatchNorm trainable); one row and a training curve."""
        from aift_tf.learner import ActiveLearner
        from aift_tf.zoo import build_model

        sdir = rf.state_dir(self.out, name, seed)
        r, latest = rf.latest_round(sdir)
        if latest is not None:
            self.rows[(name, seed)] = rf.read_rows(latest)
            return
        cfg = self.cfg
        label = self._label(name, seed)
        weights = self.m0["weights"] if name == FULL else None
        trainable = cfg.trainable if name == FULL else "all"
        model = None
        if name == SCRATCH:
            model = build_model(cfg.model, tuple(self.store.patch_shape), self.store.num_classes, weights=None,
                                trainable="all", train_batchnorm=True, seed=int(seed))
        learner = ActiveLearner(
            self.store, model, model_name=cfg.model, weights=weights, trainable=trainable, strategy="random",
            learning="RFT", finetune=full_finetune(cfg, self.plan, seed), seed=seed,
            val_split=self.plan.early_stopping_split, progress=self.progress.stage(label),
            **self._speed_options(trainable),
        )
        pool = self.store.ids("train")
        rec = learner.teach(pool, self.store.labels[pool], callbacks=self._callbacks(name, seed, 1, label), verbose=0)
        ev = self._evaluate(learner)
        hist = rec["finetune"]
        row = self._row(name, seed, 1, rec["labels"], rec["positives"], ev, hist.get("seconds", 0.0), 0.0,
                        labeled=learner.labeled_labels)
        curve = [{"job": name, "seed": int(seed), "epoch": e + 1, "loss": float(hist["loss"][e]),
                  "val_auc": float(hist["val_auc"][e]) if "val_auc" in hist else None,
                  "val_loss": float(hist["val_loss"][e]) if "val_loss" in hist else None}
                 for e in range(len(hist.get("loss", [])))]
        info = {"max_epochs": self.plan.full_epochs, "epochs_run": hist.get("epochs"), "monitor": FULL_MONITOR,
                "best_epoch": hist.get("best_epoch"), "best_val_auc": hist.get("best_val_auc"),
                "early_stopping_split": self.plan.early_stopping_split, "weights": weights, "curve": curve}
        rf.save_round(sdir, 1, [row], None, ev, extra=info)
        self.rows[(name, seed)] = [row]
        self.curves[(name, seed)] = curve
        self.flush_csv()
        self.flush_curves()
        self._tb_eval(name, seed, row)
        self.progress.advance()
        what = "full training" if name == FULL else "from scratch"
        self.progress.line(f"{name:>24} seed {seed} ({what}): {row['labels']:5d} labels  AUC {row['test_auc']:.4f}"
                           f"  ({hist.get('epochs')} epochs)")


# ----------------------------------------------------------------------------------------------
# entry point


def worker_experiment(out: Path, store_path: Path, trunk_cache_dir=None) -> Experiment:
    """The :class:`Experiment` of a worker process (:mod:`simulate.parallel`): the run folder's settings, the
    store opened once, no bars (per-round lines are returned to the parent), rounds.csv left to the parent."""
    from aift_tf.store import open_store

    out = Path(out)
    exp = Experiment(out, read_run(out), open_store(store_path), LineRecorder(),
                     trunk_cache_dir=trunk_cache_dir, worker=True)
    quiet_warnings(True)
    return exp


def run_experiment(config: Optional[SimConfig], out=None, *, resume: bool = False, quiet: bool = True,
                   argv=None, cache_dir=None, explicit: Optional[dict] = None, workers=1) -> dict:
    """Run (or resume) a simulation and write the run folder (its report is :mod:`simulate.report`'s).

    Returns:
        ``{"out": run folder, "runtime": {...}}``; pass both to :func:`simulate.report.build_report`.

    Args:
        config: the settings; ignored with `resume=True` (the run's config.json is used).
        out: run folder; default `runs/<timestamp>-<app>` under the current folder.
        resume: continue the run in `out` (finished jobs are kept; the report is rebuilt).
        quiet: no progress bars or lines.
        argv: the command line, recorded in config.json.
        cache_dir: where app stores are generated/cached (default $AIFT_CACHE or ~/.cache/aift-tf).
        explicit: with `resume`, settings given explicitly by the user; any that differs from the
            run's raises AiftError.
        workers: processes running jobs side by side (:mod:`simulate.parallel`): an int >= 1 or "auto"
            (one per CPU core, `aift-sim`'s default). Speed only: the results are the same.
    """
    from simulate.parallel import check_workers, resolve_workers

    t_start = time.perf_counter()
    if resume:
        check_workers(workers)
        out, run, store = resumed_run(out, cache_dir, explicit)
    else:
        from aift_tf.distribute import canonical_name

        check_workers(workers, canonical_name(getattr(config, "distribute", "none") or "none"))
        out, run, store = new_run(config, out, quiet, argv, cache_dir)
    try:
        from aift_tf.cli_support import quiet_tensorflow

        quiet_tensorflow()
        prog = Progress(quiet=quiet)
        from aift_tf.files import default_cache_dir

        trunk_dir = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "trunk"
        trunk_dir.mkdir(parents=True, exist_ok=True)
        exp = Experiment(out, run, store, prog, trunk_cache_dir=trunk_dir)
        done = exp.load_existing()
        exp.workers = resolve_workers(workers, sum(exp.job_pending(*job) for job in exp.job_list()),
                                      exp.cfg.distribute)
        if prog.outer is not None:
            prog.outer.total = exp.total_units()
            prog.outer.n = min(done, exp.total_units())
            prog.outer.refresh()
        m0, plan = run.m0, run.plan
        prog.line(f"run folder: {out}")
        prog.line(f"data: {run.data['path']} (pool {plan.pool_size}, test {plan.test_size})")
        prog.line(f"M0: {m0.get('path') or m0.get('source')}" + (f" — {m0['note']}" if m0.get("note") else ""))
        prog.line(f"plan: {plan.seeds} paired seeds; initial random set (mean {plan.initial['mean']:.1f}) + "
                  f"{plan.rounds} rounds x {plan.query_size} (budget ~{plan.budget})")
        if resume and done:
            prog.line(f"resuming: {done} finished round(s) found")
        if exp.workers > 1:
            prog.line(f"workers: {exp.workers} processes run the jobs side by side (each job's lines print "
                      f"when it finishes)")
        t_loop = time.perf_counter()
        try:
            exp.run()
        finally:
            prog.close()
        exp.flush_csv()
        runtime = {"this_invocation_seconds": round(time.perf_counter() - t_start, 2),
                   "loop_seconds": round(time.perf_counter() - t_loop, 2), "resumed": bool(resume),
                   "workers": exp.workers}
        return {"out": out, "runtime": runtime}
    finally:
        store.close()
