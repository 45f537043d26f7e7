"""The annotation project's old import path: it lives in :mod:`aift_tf.annotation.project` (the
:class:`Project` and its verbs) and the modules beside it (re-exported here, so that old imports keep working).
"""

from aift_tf.annotation.checks import check_name, printable, quoted  # noqa: F401
from aift_tf.annotation.checkpoints import (KEEP_CHECKPOINTS, DamagedCheckpoint, LedgerMismatch,  # noqa: F401
                                            cause_line)
from aift_tf.annotation.create import PROJECT_FORMAT, init_project  # noqa: F401
from aift_tf.annotation.layout import (ADJUDICATION, CHECKPOINTS, CONFIG, GALLERY, LEDGER, LOCK,  # noqa: F401
                                       QUERIES, QUERY_INFO)
from aift_tf.annotation.lock import locked as _locked  # noqa: F401
from aift_tf.annotation.project import CRASH_HOOK, Project  # noqa: F401
from aift_tf.annotation.rounds import QUERY_COLUMNS, assign_annotators, parse_annotators  # noqa: F401
from aift_tf.files import round_name, round_number  # noqa: F401
from aift_tf.zoo.pretrained import parse_weights  # noqa: F401 (the one weights vocabulary)
