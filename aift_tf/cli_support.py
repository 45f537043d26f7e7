"""Shared plumbing for the command-line tools (`aift`, `aift-sim`, `aift-data`).

Every CLI entry point is wrapped with :func:`run_cli`: user errors become one line on stderr and exit
code 2, never a traceback; TensorFlow start-up logs are quieted before anything imports it.
"""

from __future__ import annotations

import os
import sys

from aift_tf.errors import AiftError


def quiet_tensorflow() -> None:
    """Quiet TensorFlow's C++ start-up logs; call before TensorFlow is imported (a no-op after).

    ``TF_CPP_MIN_LOG_LEVEL`` quiets the logs once TensorFlow's logging is set up, but ``import tensorflow``
    prints its oneDNN notice twice before that ("All log messages before absl::InitializeLog() …"), so the
    first ``import tensorflow`` of the process sends the C-level stderr to /dev/null while it runs
    (Python errors still surface as exceptions). oneDNN's CPU kernels stay on (TensorFlow's default): on a
    2-core CPU they fine-tune ~1.3x faster than the Eigen kernels, and their results do not change with the
    number of threads, which lets `aift-sim --workers` run jobs in one-thread processes with the same numbers
    (benchmarks/RESULTS.md).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlowFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowFinder())


class _StderrToDevnull:
    """Send file descriptor 2 to /dev/null for the block (C++ logs bypass ``sys.stderr``)."""

    def __enter__(self):
        sys.stderr.flush()
        self.saved = os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)

    def __exit__(self, *exc):
        os.dup2(self.saved, 2)
        os.close(self.saved)


class _QuietLoader:
    def __init__(self, real):
        self.real = real

    def create_module(self, spec):
        return self.real.create_module(spec)

    def exec_module(self, module):
        with _StderrToDevnull():
            self.real.exec_module(module)


class _QuietTensorFlowFinder:
    """A ``sys.meta_path`` finder that imports ``tensorflow`` (once) with :class:`_StderrToDevnull`."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        import importlib.util

        sys.meta_path[:] = [f for f in sys.meta_path if f is not self]  # the real finders find it
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _QuietLoader(spec.loader)
        return spec


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


def range_message(e) -> "str | None":
    """A click range error (``IntRange`` / ``FloatRange``) in the message form of :mod:`aift_tf.checks`:
    ``--epochs must be an integer >= 1 and <= 10000; got 0`` (None for any other error).

    Args:
        e: the ``click.ClickException`` raised while parsing.

    Example:
    >>> import click
    >>> p = click.Option(["--epochs"], type=click.IntRange(1, 10))
    >>> range_message(click.BadParameter("0 is not in the range 1<=x<=10.", param=p))
    '--epochs must be an integer >= 1 and <= 10; got 0'
    """
    import click

    param = getattr(e, "param", None)
    kind = getattr(param, "type", None)
    if not isinstance(e, click.BadParameter) or not isinstance(kind, (click.IntRange, click.FloatRange)):
        return None
    text = str(getattr(e, "message", ""))
    if " is not in the range" not in text:
        return None
    value = text.split(" is not in the range")[0]
    names = [o for o in getattr(param, "opts", []) if o.startswith("--")] or [param.human_readable_name]
    what = "an integer" if isinstance(kind, click.IntRange) else "a number"
    def shown(v):  # integers in full (a seed bound of 4294967295, not 4.29497e+09)
        return str(v) if isinstance(v, int) else f"{v:g}"

    parts = ([f"{'>' if kind.min_open else '>='} {shown(kind.min)}"] if kind.min is not None else []) + \
        ([f"{'<' if kind.max_open else '<='} {shown(kind.max)}"] if kind.max is not None else [])
    rule = " and ".join(parts)
    return f"{names[0]} must be {what} {rule}; got {value}"


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
        msg = range_message(e) or e.format_message().replace("\n", " ")
        click.echo(f"error: {msg}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)
