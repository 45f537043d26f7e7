"""Progress bars of the command-line tools (``aift``, ``aift-sim``, ``aift-data``): one owner, tqdm underneath.

:class:`Progress` turns the library's progress callbacks into tqdm bars and is silent when ``quiet``:

- :meth:`Progress.stage` for ``progress(stage, done, total)`` callbacks (scoring passes of the learner);
- :meth:`Progress.counter` for ``progress(done, total)`` callbacks (store generation and imports);
- :meth:`Progress.fit_callback` for Keras ``fit`` (one bar per fine-tuning over its steps, with the loss);
- an optional outer bar (``outer="rounds"``) advanced by :meth:`Progress.advance`, and :meth:`Progress.line`
  to print a line without breaking the bars.

Importing this module is cheap: tqdm is imported when the first bar is drawn, Keras only by
:meth:`Progress.fit_callback`.

Example:
>>> with Progress(quiet=True) as bars:
...     tick = bars.counter("import")
...     tick(3, 10)
"""

from __future__ import annotations

from typing import Callable, Optional

__all__ = ["Progress"]


def _noop(*args, **kwargs) -> None:
    return None


class Progress:
    """tqdm bars for progress callbacks; nothing is drawn or printed when ``quiet``.

    Args:
        quiet: draw no bars and print no lines (errors are the caller's business).
        outer: description of an outer bar (e.g. ``"rounds"``), or None for none.
        total: the outer bar's total.
        unit: the outer bar's unit.

    Example:
    >>> bars = Progress(quiet=True, outer="rounds", total=8)
    >>> cb = bars.stage("aift seed 0")     # None when quiet: callers pass it on as ``progress=``
    >>> bars.advance(); bars.close()
    """

    def __init__(self, quiet: bool = False, *, outer: Optional[str] = None, total: Optional[int] = None,
                 unit: str = "round"):
        self.quiet = bool(quiet)
        self._bars = {}
        self.outer = None
        if not self.quiet and outer:
            self.outer = self._tqdm()(total=total, desc=outer, unit=unit, dynamic_ncols=True, position=0)

    @staticmethod
    def _tqdm():
        from tqdm.auto import tqdm

        return tqdm

    def _new_bar(self, total, desc: str, unit: str):
        position = 1 if self.outer is not None else None
        return self._tqdm()(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True, position=position)

    def _update(self, key, done, total, desc: str, unit: str) -> None:
        bar = self._bars.get(key)
        if bar is None or done < bar.n:  # a new pass of the same stage starts again from 0
            if bar is not None:
                bar.close()
            bar = self._bars[key] = self._new_bar(total, desc, unit)
        if total is not None and bar.total != total:
            bar.total = total
        bar.update(max(0, int(done) - bar.n))
        if total is not None and done >= total:
            bar.close()
            self._bars.pop(key, None)

    def advance(self, n: int = 1) -> None:
        """Advance the outer bar by ``n`` (no-op without one)."""
        if self.outer is not None:
            self.outer.update(n)

    def line(self, msg: str) -> None:
        """Print ``msg`` on its own line above the bars (nothing when quiet)."""
        if self.quiet:
            return
        if self.outer is not None:
            self.outer.write(msg)
        else:
            self._tqdm().write(msg)

    def stage(self, label: Optional[str] = None, names: Optional[dict] = None) -> Optional[Callable]:
        """A ``(stage, done, total)`` callback drawing one bar per stage, or None when quiet.

        Args:
            label: prefix of every bar's description (e.g. ``"aift seed 0"``).
            names: display names of stages (e.g. ``{"score": "scoring"}``).
        """
        if self.quiet:
            return None
        names = names or {}

        def cb(stage, done, total):
            name = names.get(stage, stage)
            self._update(("stage", label, stage), done, total, f"{label} {name}" if label else str(name), "cand")

        return cb

    def counter(self, desc: str, unit: str = "it") -> Callable:
        """A ``(done, total)`` callback drawing one bar (a no-op when quiet; non-numeric ``done`` is ignored)."""
        if self.quiet:
            return _noop

        def cb(done=None, total=None, *args, **kwargs):
            if isinstance(done, (int, float)) and not isinstance(done, bool):
                self._update(("count", desc), done, total, desc, unit)

        return cb

    def fit_callback(self, desc: str):
        """A Keras callback drawing one bar per ``fit`` over all its steps (epoch and loss shown), or None when quiet."""
        if self.quiet:
            return None
        import keras

        owner = self

        class FitBar(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                steps = (self.params or {}).get("steps") or None
                epochs = (self.params or {}).get("epochs") or 1
                self.bar = owner._new_bar(steps * epochs if steps else None, desc, "batch")
                self.epoch = 0
                self.epochs = epochs

            def on_epoch_begin(self, epoch, logs=None):
                self.epoch = epoch + 1

            def on_train_batch_end(self, batch, logs=None):
                self.bar.update(1)
                if logs and "loss" in logs:
                    self.bar.set_postfix(epoch=f"{self.epoch}/{self.epochs}", loss=f"{float(logs['loss']):.4f}",
                                         refresh=False)

            def on_train_end(self, logs=None):
                self.bar.close()

        return FitBar()

    def close(self) -> None:
        """Close every bar (the outer one too)."""
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()
        if self.outer is not None:
            self.outer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
