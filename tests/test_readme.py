"""The README's library example runs as written (on a tiny generated store named pe.h5)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_library_example_runs(tmp_path, monkeypatch):
    from aift_tf.store import write_store
    from conftest import make_separable_arrays

    blocks = [b for b in _python_blocks() if "ActiveLearner" in b]
    assert blocks, "README has no library example"
    a = make_separable_arrays(n=64)
    write_store(tmp_path / "pe.h5", a["patches"], a["labels"], a["groups"], a["split"],
                app="tiny", class_names=["negative", "positive"])
    monkeypatch.chdir(tmp_path)
    code = blocks[0].replace("FineTuneConfig(epochs=3)", "FineTuneConfig(epochs=1, batch_size=16)")
    code = code.replace("learner.query(20)", "learner.query(4)")
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    learner = namespace["learner"]
    assert learner.round == 5 and learner.labeled_ids.size == namespace["start"].size + 16
    assert (tmp_path / "pe-state" / "state.json").is_file()
    from aift_tf.export import load_exported

    served = load_exported(tmp_path / "pe-model")
    out = served(namespace["store"].read_float([0, 1]))
    assert out["candidate_probability"].shape == (2, 2)
