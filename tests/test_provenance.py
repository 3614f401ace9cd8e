"""Every run says which code, command and machine made it."""
import json
import subprocess
from pathlib import Path

from selfadapt.config.provenance import code_identity, provenance
from selfadapt.config.run import RunConfig
from selfadapt.experiment import run_experiment
from selfadapt.version import __version__

ROOT = Path(__file__).resolve().parent.parent


def _git(*args):
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True).stdout.strip()


def test_the_code_identity_is_the_checkouts_commit_and_its_uncommitted_changes():
    commit, changes = code_identity()
    assert commit == _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--", "selfadapt")
    assert (changes is None) == (dirty == ""), "a hash exactly when the package has uncommitted changes"
    assert code_identity() == (commit, changes), "the same code gives the same identity"


def test_a_run_records_its_provenance_in_the_run_directory_and_the_summary(tmp_path):
    config = RunConfig.from_flat({"dataset": "digits", "model": "linear", "method": "ce", "epochs": 1,
                                  "batch_size": 256, "augment": "none", "device": "cpu", "progress": False})
    summary = run_experiment(config, tmp_path / "run", verbose=False)
    records = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert len(records) == 1 and records[0]["selfadapt"] == __version__
    assert summary["provenance"] == records[0]
    assert records[0]["device"].startswith("cpu (") and records[0]["torch"]
    assert set(records[0]) == set(provenance("cpu"))
