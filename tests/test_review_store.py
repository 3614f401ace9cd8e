"""review.csv: atomic writes with time and previous value, validation, two tabs, resume."""
import csv
import os
import threading

import pytest

from selfadapt.apps.review.store import COLUMNS, Conflict, DecisionStore, Sample
from selfadapt.errors import SelfAdaptError

CLASSES = ["cat", "dog", "fox"]
SAMPLES = {i: Sample(f"img/{i}.png", CLASSES[i % 3], CLASSES[(i + 1) % 3]) for i in range(200)}


def open_store(folder):
    return DecisionStore(folder / "review.csv", CLASSES, SAMPLES.get)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_every_decision_is_on_disk_with_time_previous_value_and_version(tmp_path):
    store = open_store(tmp_path)
    store.decide(4, "accept", version=0)
    (row,) = read_csv(tmp_path / "review.csv")
    assert list(row) == list(COLUMNS)
    assert row["decision"] == "accept" and row["label"] == SAMPLES[4].suggested and row["previous"] == ""
    assert row["file"] == "img/4.png" and row["given"] == "dog" and row["version"] == "1"
    assert row["time"].endswith("Z") and row["time"][:2] == "20"
    store.decide(4, "relabel", "cat", version=1)
    (row,) = read_csv(tmp_path / "review.csv")
    assert (row["decision"], row["label"], row["previous"], row["version"]) == ("relabel", "cat", "accept:fox", "2")
    store.decide(4, None, version=2)  # undo to undecided
    assert read_csv(tmp_path / "review.csv") == []


def test_relabel_to_the_suggested_or_given_class_is_accept_or_keep(tmp_path):
    store = open_store(tmp_path)
    assert store.decide(0, "relabel", "dog", version=0)["decision"] == "accept"
    assert store.decide(1, "relabel", "dog", version=0)["decision"] == "keep"
    assert store.decide(2, "skip", version=0)["label"] == ""


@pytest.mark.parametrize("index, decision, label, message", [
    (999, "accept", None, "no sample 999"),
    (3, "relabel", "wolf", "unknown class 'wolf'"),
    (3, "delete", None, "unknown decision 'delete'"),
    (3, "accept", "cat", "accept means label 'dog'"),
])
def test_invalid_decisions_are_refused_and_nothing_is_written(tmp_path, index, decision, label, message):
    store = open_store(tmp_path)
    with pytest.raises(SelfAdaptError, match=message):
        store.decide(index, decision, label, version=0)
    assert not (tmp_path / "review.csv").exists()


def test_a_failed_write_leaves_file_and_memory_as_they_were(tmp_path, monkeypatch):
    store = open_store(tmp_path)
    store.decide(1, "accept", version=0)
    before = (tmp_path / "review.csv").read_bytes()

    def broken(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError):
        store.decide(2, "keep", version=0)
    monkeypatch.undo()
    assert (tmp_path / "review.csv").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == [".review.lock", "review.csv"]  # no temporary file left
    assert list(store.rows()) == [1]


def test_a_stale_tab_cannot_overwrite_a_decision_silently(tmp_path):
    tab1, tab2 = open_store(tmp_path), open_store(tmp_path)  # two servers (processes) or two tabs
    seen_by_tab2 = 0  # tab 2 loaded sample 7 while it was undecided
    tab1.decide(7, "accept", version=0)
    with pytest.raises(Conflict) as conflict:
        tab2.decide(7, "keep", version=seen_by_tab2)
    assert conflict.value.current["decision"] == "accept"
    assert tab2.decide(7, "keep", version=conflict.value.current["version"])["previous"] == "accept:fox"
    assert tab1.rows()[7]["decision"] == "keep"


def test_concurrent_decisions_from_two_stores_are_all_kept(tmp_path):
    stores = [open_store(tmp_path), open_store(tmp_path)]  # each with its own lock: only flock joins them
    errors = []

    def review(k):
        try:
            for i in range(k, 160, 8):
                stores[k % 2].decide(i, "accept", version=0)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=review, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(int(r["index"]) for r in read_csv(tmp_path / "review.csv")) == list(range(160))


def test_a_new_store_resumes_decisions_and_place(tmp_path):
    store = open_store(tmp_path)
    store.decide(5, "skip", version=0)
    store.decide(6, "relabel", "fox", version=0)
    store.write_state({"cursor": 6, "filters": {"status": "todo"}})
    again = open_store(tmp_path)
    assert again.rows() == store.rows()
    assert again.read_state() == {"cursor": 6, "filters": {"status": "todo"}}


def test_a_damaged_review_csv_is_one_error_naming_the_line(tmp_path):
    open_store(tmp_path).decide(5, "accept", version=0)
    text = (tmp_path / "review.csv").read_text().replace(",accept,cat,", ",relabel,wolf,")
    (tmp_path / "review.csv").write_text(text)
    with pytest.raises(SelfAdaptError, match="review.csv line 2: unknown class 'wolf'"):
        open_store(tmp_path)
