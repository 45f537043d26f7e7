"""``aift``'s old import path: the command lives in :mod:`aift_tf.annotation.cli` (re-exported here, so that
``from aift_tf.cli import main`` and ``python -m aift_tf.cli`` keep working)."""

from aift_tf.annotation.cli import cli, main  # noqa: F401

if __name__ == "__main__":
    main()
