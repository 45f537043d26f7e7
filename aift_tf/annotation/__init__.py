"""The annotation project's parts, split by concern (used by :mod:`aift_tf.project`):

- :mod:`~aift_tf.annotation.checks`: one-line validation helpers (names, strings, fields; integers and numbers are
  checked by :mod:`aift_tf.checks` with ``where=``).
- :mod:`~aift_tf.annotation.records`: config.json, state.json and query.json checked field by field.
- :mod:`~aift_tf.annotation.ledger`: the versioned label ledger, several annotators, consensus, Cohen's kappa.
- :mod:`~aift_tf.annotation.labels_csv`: the streamed parser of label CSVs (``id,label[,note,annotator]``).

Nothing here imports TensorFlow.
"""
