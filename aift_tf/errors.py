"""User-facing errors.

Every problem caused by user input (a bad file, a bad option, a bad value) is raised as an
:class:`AiftError` whose message is one line naming the bad value. The command-line tools catch
it and exit with code 2 without a traceback.
"""


class AiftError(ValueError):
    """A problem with the user's input, described in one line."""


class StoreError(AiftError):
    """A candidate store file is missing, unreadable or malformed."""


def check_known_fields(cls, d: dict, what: str) -> None:
    """Raise a one-line :class:`AiftError` naming the keys of ``d`` that are not fields of dataclass ``cls``.

    Example: ``check_known_fields(FineTuneConfig, {"epochs": 1}, "fine-tuning option")`` passes.
    """
    import dataclasses

    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise AiftError(f"unknown {what}(s): {', '.join(sorted(unknown))}")
