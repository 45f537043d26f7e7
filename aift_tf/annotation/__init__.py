"""The annotation application (``aift``), split by concern:

- :mod:`~aift_tf.annotation.layout`: every file and folder name of a project folder, the names built from a round
  number or an annotator (sheets, pages, the labeling page's download) and their parsers.
- :mod:`~aift_tf.annotation.create`: ``aift init`` and the config.json it writes.
- :mod:`~aift_tf.annotation.lock`: the project's lock.
- :mod:`~aift_tf.annotation.ledger`: the versioned label ledger (read, append, restore), several annotators,
  consensus, Cohen's kappa.
- :mod:`~aift_tf.annotation.checkpoints`: the learner checkpoints (list, load, save, prune, damaged), crash replay
  of ledger rounds, ``aift recover``.
- :mod:`~aift_tf.annotation.rounds`: query rounds and adjudication lists (folders, query.json, sheets), dealing
  candidates to annotators, what round a label CSV answers.
- :mod:`~aift_tf.annotation.project`: :class:`~aift_tf.annotation.project.Project`, the verbs (query, teach,
  adjudicate, status, export, recover) over the modules above.
- :mod:`~aift_tf.annotation.gallery`: the labeling page and its patch montages.
- :mod:`~aift_tf.annotation.cli`: the ``aift`` command (click).
- :mod:`~aift_tf.annotation.checks`: one-line validation helpers (names, strings, fields; integers and numbers are
  checked by :mod:`aift_tf.checks` with ``where=``).
- :mod:`~aift_tf.annotation.records`: config.json, state.json and query.json checked field by field.
- :mod:`~aift_tf.annotation.labels_csv`: the streamed parser of label CSVs (``id,label[,note,annotator]``).

``aift_tf.project``, ``aift_tf.cli`` and ``aift_tf.gallery`` are the old import paths, re-exporting these.
Nothing here imports TensorFlow at import time.
"""
