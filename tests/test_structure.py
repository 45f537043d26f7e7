"""Structure rules of the library, checked on the source (no TensorFlow needed):

- no module of ``aift_tf`` imports another module's ``_private`` names (``from x import _y`` or ``x._y``);
- ``aift_tf`` never imports ``simulate``;
- ``simulate`` (the harness) uses the library's public modules only: it imports no ``aift_tf._private`` module
  (``aift_tf.files`` and ``aift_tf.cli_support`` are the public homes of atomic files and CLI plumbing);
- no import cycle among the harness's modules (``simulate.parallel`` gets the worker's experiment from a factory
  the caller passes, so it never imports ``simulate.experiment``), counting imports inside functions too;
- one checks module: ``check_int`` is defined once in ``aift_tf`` (:mod:`aift_tf.checks`, with ``where=`` for values
  read back from a file);
- one owner per persisted format: no module of ``aift_tf`` or ``simulate`` but :mod:`aift_tf.checkpoint` names the
  learner's checkpoint files (``state.json``, ``model.keras``, ``m0.weights.h5``) in a string (docstrings aside);
  :mod:`aift_tf.export` may name its own export folder's ``model.keras``, another format;
- round names through one function: no string outside :mod:`aift_tf.files` builds a ``-NNN`` round number by hand
  (``f"round-{k:03d}"``, ``"round-{:03d}"``, ``f"{ADJUDICATION}-{k:03d}"``): :func:`aift_tf.files.round_name`
  does; and the patterns that parse such names are written once: the round number (``\\d{3,}``,
  ``aift_tf.files.ROUND_DIGITS``) and the annotator name (``[^\\W_][\\w.-]{0,63}``,
  ``aift_tf.annotation.checks.NAME_PATTERN``);
- one owner of a project folder's layout: no module but :mod:`aift_tf.annotation.layout` names a project's files in
  a string (docstrings aside): ``ledger.jsonl``, ``query.json``, ``.aift.lock``, ``queries[-NAME].csv``,
  ``gallery[-NAME].html``, the labeling page's ``…-labels.csv`` download, in ``aift_tf`` and ``simulate`` alike;
  ``config.json``, ``checkpoints/`` and ``adjudication-`` only in ``aift_tf`` (a simulation run folder has a
  ``config.json`` of its own, which :mod:`simulate.run_folder` owns; the harness is checked for the names that are
  the project's alone);
- the annotation application lives in :mod:`aift_tf.annotation`: the old paths ``aift_tf/project.py``,
  ``cli.py`` and ``gallery.py`` only re-export it (imports, and ``python -m aift_tf.cli``), no module of
  ``aift_tf.annotation`` imports them, and its modules import one another without a cycle.
- an ``aift-sim`` run folder's files and folders (``config.json``, ``rounds.csv``, ``summary.json``, the figures,
  ``models/``, ``state/`` …) are named in code only by :mod:`simulate.run_folder` (prose in messages aside).
"""

import ast
import re
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / "aift_tf"
HARNESS = LIB.parent / "simulate"


def _modules():
    for path in sorted(LIB.rglob("*.py")):
        yield path, ast.parse(path.read_text(), filename=str(path))


def _module_name(path: Path) -> str:
    parts = path.relative_to(LIB.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(node: ast.ImportFrom, here: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = here.split(".") if is_package else here.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


MODULES = {_module_name(p) for p in LIB.rglob("*.py")}


def test_no_module_imports_another_modules_private_names():
    bad = []
    for path, tree in _modules():
        here = _module_name(path)
        is_pkg = path.name == "__init__.py"
        aliases = {}  # local name -> imported module (import aift_tf.x as y)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                src = _resolve(node, here, is_pkg)
                if not src.startswith("aift_tf") or src == here:
                    continue
                for a in node.names:
                    # a package's private submodule (``from aift_tf.zoo import _common``) is shared inside it
                    inside = here.startswith(src + ".") and f"{src}.{a.name}" in MODULES
                    if a.name.startswith("_") and not a.name.startswith("__") and not inside:
                        bad.append(f"{path.relative_to(LIB.parent)}:{node.lineno}: from {src} import {a.name}")
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("aift_tf"):
                        aliases[a.asname or a.name] = a.name
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                target = ast.unparse(node.value)
                if target in aliases and aliases[target] != here:
                    bad.append(f"{path.relative_to(LIB.parent)}:{node.lineno}: {target}.{node.attr}")
    assert not bad, "private names used across modules:\n" + "\n".join(bad)


def test_the_library_never_imports_the_harness():
    bad = []
    for path, tree in _modules():
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            bad += [f"{path.relative_to(LIB.parent)}:{node.lineno}: {n}" for n in names
                    if n == "simulate" or n.startswith("simulate.")]
    assert not bad, "aift_tf imports simulate:\n" + "\n".join(bad)



def test_one_check_int():
    found = [(str(path.relative_to(LIB.parent)), node.lineno) for path, tree in _modules() for node in ast.walk(tree)
             if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "check_int"]
    assert [f for f, _ in found] == ["aift_tf/checks.py"], \
        "check_int must be defined once, in aift_tf/checks.py:\n" + "\n".join(f"{f}:{n}" for f, n in found)


def _private_part(module: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in module.split("."))


def test_the_harness_imports_no_private_library_module():
    bad = []
    for path in sorted(HARNESS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith("aift_tf"):
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            bad += [f"{path.relative_to(LIB.parent)}:{node.lineno}: {n}" for n in names
                    if (n == "aift_tf" or n.startswith("aift_tf.")) and _private_part(n)]
    assert not bad, "simulate imports private aift_tf modules or names:\n" + "\n".join(bad)


def _harness_imports() -> dict:
    """``{module: {harness modules it imports}}`` for every module of ``simulate`` (imports inside functions too)."""
    names = {}
    for path in sorted(HARNESS.rglob("*.py")):
        parts = path.relative_to(LIB.parent).with_suffix("").parts
        names[path] = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    known = set(names.values())
    graph = {}
    for path, here in names.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                src = _resolve(node, here, path.name == "__init__.py")
                deps.add(src)
                deps.update(f"{src}.{a.name}" for a in node.names)  # from simulate import run_folder
        graph[here] = {d for d in deps if d in known and d != here and d != "simulate"}
    return graph


def _import_cycles(graph: dict) -> list:
    """Every import cycle found by a depth-first walk of ``graph`` (module -> modules it imports), as
    ``"a -> b -> a"`` lines."""
    cycles, state = [], {}

    def visit(m, stack):
        state[m] = "open"
        for d in sorted(graph[m]):
            if state.get(d) == "open":
                cycles.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d, stack + [d])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return cycles


def test_no_import_cycle_in_the_harness():
    graph = _harness_imports()
    assert "simulate.experiment" in graph and "simulate.parallel" in graph
    assert "simulate.experiment" not in graph["simulate.parallel"], "simulate.parallel imports simulate.experiment"
    cycles = _import_cycles(graph)
    assert not cycles, "import cycles among simulate modules:\n" + "\n".join(cycles)


def _sources():
    """Every module of the library and of the harness: ``(path relative to the repository, tree)``."""
    for path in sorted(LIB.rglob("*.py")) + sorted(HARNESS.rglob("*.py")):
        yield path.relative_to(LIB.parent).as_posix(), ast.parse(path.read_text(), filename=str(path))


def _strings(tree):
    """``(node, text)`` of every string constant of ``tree`` but docstrings, the pieces of f-strings included."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node, node.value


CHECKPOINT_OWNER = "aift_tf/checkpoint.py"
CHECKPOINT_FILES = ("state.json", "model.keras", "m0.weights.h5")
#: a module that writes another format holding a file of the same name: {module: names it may use}
OTHER_FORMATS = {"aift_tf/export.py": {"model.keras"}}  # the export folder: saved_model/, model.keras, provenance


def test_only_the_checkpoint_module_names_checkpoint_files():
    names = "|".join(re.escape(n) for n in CHECKPOINT_FILES)
    rx = re.compile(rf"(?<![\w.-])({names})(?!\w)")
    bad = []
    for where, tree in _sources():
        if where == CHECKPOINT_OWNER:
            continue
        for node, text in _strings(tree):
            bad += [f"{where}:{node.lineno}: {m.group(1)!r} in {text!r}" for m in rx.finditer(text)
                    if m.group(1) not in OTHER_FORMATS.get(where, ())]
    assert not bad, ("the learner's checkpoint files are named only by aift_tf/checkpoint.py (its constants and "
                     "*_file functions):\n" + "\n".join(bad))


ROUND_NAME_OWNER = "aift_tf/files.py"


def test_round_names_are_built_only_by_round_name():
    template = re.compile(r"-(\{[^{}]*:03d?\}|%03d)")  # "round-{:03d}", "round-{k:03d}", "round-%03d"
    bad = []
    for where, tree in _sources():
        if where == ROUND_NAME_OWNER:
            continue
        bad += [f"{where}:{node.lineno}: {text!r}" for node, text in _strings(tree) if template.search(text)]
        for node in ast.walk(tree):
            if not isinstance(node, ast.JoinedStr):
                continue
            for before, value in zip(node.values, node.values[1:]):
                spec = value.format_spec if isinstance(value, ast.FormattedValue) else None
                spec = "".join(c.value for c in spec.values if isinstance(c, ast.Constant)) if spec else ""
                if (re.fullmatch(r"03d?", spec) and isinstance(before, ast.Constant)
                        and str(before.value).endswith("-")):
                    bad.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    assert not bad, "round names are built by aift_tf.files.round_name only:\n" + "\n".join(bad)


#: {pattern as written in a regex: the one module that may write it}
NAME_PATTERNS = {r"\d{3,}": ROUND_NAME_OWNER, r"[^\W_][\w.-]": "aift_tf/annotation/checks.py"}


def test_round_number_and_annotator_name_patterns_are_written_once():
    bad = [f"{where}:{node.lineno}: {text!r}" for where, tree in _sources() for node, text in _strings(tree)
           for pattern, owner in NAME_PATTERNS.items() if pattern in text and where != owner]
    assert not bad, ("the round-number and annotator-name patterns are aift_tf.files.ROUND_DIGITS and "
                     "aift_tf.annotation.checks.NAME_PATTERN:\n" + "\n".join(bad))


LAYOUT_OWNER = "aift_tf/annotation/layout.py"
#: a project's own files, in any module of the library or the harness
PROJECT_FILES = re.compile(r"(?<![\w.-])(ledger\.jsonl|query\.json|\.aift\.lock|queries(?:-[\w.{}]+)?\.csv"
                           r"|gallery(?:-[\w.{}]+)?\.html|[\w.{}-]*-labels(?: ?\(\d+\))?\.csv)(?![\w])")
#: names a simulation run folder shares with a project (config.json) or that are too plain to refuse in the harness
LIBRARY_ONLY = re.compile(r"(?<![\w.-])(config\.json|checkpoints(?=/|$)|adjudication-)")


def test_only_the_layout_module_names_project_files():
    bad = []
    for where, tree in _sources():
        if where == LAYOUT_OWNER:
            continue
        for node, text in _strings(tree):
            found = [m.group(1) for m in PROJECT_FILES.finditer(text)]
            if where.startswith("aift_tf/"):
                found += [m.group(1) for m in LIBRARY_ONLY.finditer(text)]
            bad += [f"{where}:{node.lineno}: {f!r} in {text!r}" for f in found]
    assert not bad, ("a project folder's files are named by aift_tf.annotation.layout only (its constants and "
                     "*_name / *_folder functions):\n" + "\n".join(bad))


OLD_PATHS = {"aift_tf/project.py", "aift_tf/cli.py", "aift_tf/gallery.py"}


def test_the_old_paths_only_re_export_the_annotation_package():
    bad = []
    for name in sorted(OLD_PATHS):
        path = LIB.parent / name
        tree = ast.parse(path.read_text(), filename=str(path))
        body = tree.body[1:] if ast.get_docstring(tree) is not None else tree.body
        for node in body:
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("aift_tf."):
                continue
            main = ("if __name__ == '__main__':\n    main()")
            if isinstance(node, ast.If) and ast.unparse(node) == main:
                continue
            bad.append(f"{name}:{node.lineno}: {ast.unparse(node).splitlines()[0]}")
    assert not bad, "aift_tf/project.py, cli.py and gallery.py only re-export aift_tf.annotation:\n" + "\n".join(bad)


def _annotation_imports() -> dict:
    """``{module: {aift_tf modules it imports}}`` for every module of ``aift_tf.annotation`` (imports inside
    functions too)."""
    graph = {}
    for path in sorted((LIB / "annotation").rglob("*.py")):
        here = _module_name(path)
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                src = _resolve(node, here, path.name == "__init__.py")
                deps.add(src)
                deps.update(f"{src}.{a.name}" for a in node.names)  # from aift_tf.annotation import layout
        graph[here] = {d for d in deps if d in MODULES and d != here}
    return graph


def test_the_annotation_package_never_imports_its_old_paths_and_has_no_cycle():
    graph = _annotation_imports()
    assert "aift_tf.annotation.project" in graph and "aift_tf.annotation.layout" in graph
    old = {"aift_tf.project", "aift_tf.cli", "aift_tf.gallery"}
    bad = [f"{m} imports {d}" for m, deps in sorted(graph.items()) for d in sorted(deps & old)]
    assert not bad, "aift_tf.annotation imports the old re-export modules:\n" + "\n".join(bad)
    inner = {m: {d for d in deps if d in graph and d != "aift_tf.annotation"} for m, deps in graph.items()}
    cycles = _import_cycles(inner)
    assert not cycles, "import cycles among aift_tf.annotation modules:\n" + "\n".join(cycles)


RUN_FOLDER_OWNER = "simulate/run_folder.py"
#: the names of an aift-sim run folder's layout (simulate/run_folder.py's docstring)
RUN_FOLDER_NAMES = ("config.json", "target.json", "rounds.csv", "full_training.csv", "summary.json", "report.md",
                    "learning_curves.png", "label_efficiency.png", "positives_found.png", "full_training.png",
                    "froc.png", "rows.json", "info.json", "test_predictions.npz", "stop_predictions.npy",
                    ".final", ".final-export", "models", "state", "tb")


def test_only_the_run_folder_module_names_run_folder_files():
    """A string that is a run folder's file or folder name, or a path built of such names (``"state/x"``), is
    written only in simulate/run_folder.py; sentences that mention a file (help, messages) are prose."""
    bad = []
    for path in sorted(HARNESS.rglob("*.py")):
        where = path.relative_to(LIB.parent).as_posix()
        if where == RUN_FOLDER_OWNER:
            continue
        for node, text in _strings(ast.parse(path.read_text(), filename=str(path))):
            parts = [p for p in text.strip().split("/") if p]
            bad += [f"{where}:{node.lineno}: {text!r}" for p in parts if p in RUN_FOLDER_NAMES][:1]
    assert not bad, "run folder names are simulate.run_folder's (its constants and functions):\n" + "\n".join(bad)
