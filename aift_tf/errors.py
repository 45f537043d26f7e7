"""User-facing errors.

Every problem caused by user input (a bad file, a bad option, a bad value) is raised as an
:class:`AiftError` whose message is one line naming the bad value. The command-line tools catch
it and exit with code 2 without a traceback.
"""


class AiftError(ValueError):
    """A problem with the user's input, described in one line."""


class StoreError(AiftError):
    """A candidate store file is missing, unreadable or malformed."""
