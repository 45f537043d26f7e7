"""Shared plumbing for the command-line tools (`aift`, `aift-sim`, `aift-data`).

Every CLI entry point is wrapped with :func:`run_cli`: user errors become one line on stderr and exit
code 2, never a traceback; TensorFlow start-up logs are quieted before anything imports it.
"""

from __future__ import annotations

import os
import sys

from aift_tf.errors import AiftError


def quiet_tensorflow() -> None:
    """Quiet TensorFlow's C++ start-up logs (set before TensorFlow is imported).

    oneDNN's CPU kernels stay on (TensorFlow's default): on a 2-core CPU they fine-tune ~1.3x faster than
    the Eigen kernels, and their results do not change with the number of threads, which lets
    `aift-sim --workers` run jobs in one-thread processes with the same numbers (benchmarks/RESULTS.md).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def version_option(prog_name: str):
    """``--version`` for a CLI: ``PROG VERSION`` from :data:`aift_tf.__version__` (the one version source).

    Example:
    >>> @version_option("aift")
    ... @click.group()
    ... def cli(): ...
    """
    import click

    from aift_tf import __version__

    return click.version_option(__version__, "--version", prog_name=prog_name, message="%(prog)s %(version)s")


def run_cli(group, argv=None, prog_name=None) -> None:
    """Run a click command/group; map user errors to exit code 2 with a one-line message."""
    import click

    quiet_tensorflow()
    try:
        rv = group.main(args=argv, prog_name=prog_name, standalone_mode=False)
    except AiftError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.exceptions.ClickException as e:  # usage errors: bad option, bad choice
        msg = e.format_message().replace("\n", " ")
        click.echo(f"error: {msg}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)
