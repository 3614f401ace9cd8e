"""The review page in a real browser: Debian's chromium driven by Playwright, on a real finder run.

Needs ``apt-get install chromium`` and ``pip install playwright`` (never ``playwright install``:
its own browser download cannot work offline). Without them the tests skip locally and FAIL in CI
(``CI`` set). Timings (page open, save latency, key rate) are printed and, with
``SELFADAPT_REVIEW_MEASUREMENTS=FILE``, appended to FILE as JSON lines; they are never asserted.
"""
import csv
import json
import os
import shutil
import time

import numpy as np
import pytest
from review_support import make_run, write_digit_pngs, write_features

from selfadapt.apps.review.app import ReviewApp
from selfadapt.apps.review.server import ReviewServer
from selfadapt.apps.review.static_page import write_static_page
from selfadapt.apps.review.store import COLUMNS
from selfadapt.apps.review.suspects import load_run
from selfadapt.cli import main

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    problem = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "playwright is not installed (pip install playwright; the browser comes from Debian)"
    if problem is None and not os.access(CHROMIUM, os.X_OK):
        problem = f"no browser at {CHROMIUM} (apt-get install -y chromium chromium-driver)"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def finder_run(tmp_path_factory):
    """find-label-issues on 400 real digit PNGs listed in a CSV, 40 of them filed under a wrong class."""
    root = tmp_path_factory.mktemp("digits-csv")
    rng = np.random.default_rng(0)
    write_digit_pngs(root, per_class=40, wrong=set(rng.choice(400, 40, replace=False).tolist()))
    argv = ["find-label-issues", "--dataset", f"csv:{root / 'labels.csv'}", "--model", "mlp", "--width", "128",
            "--epochs", "30", "--batch-size", "32", "--lr", "0.05", "--augment", "none", "--device", "cpu",
            "--no-progress", "--out", str(root / "run")]
    assert main(argv) == 0
    return root


@pytest.fixture
def run_dir(finder_run, tmp_path):
    """A fresh copy of the finder run (its data stays where the run's config points)."""
    return shutil.copytree(finder_run / "run", tmp_path / "run")


def serve(run_dir):
    server = ReviewServer(ReviewApp(load_run(run_dir)))
    server.start_background()
    return server


def stop(server):
    server.shutdown()
    server.server_close()


def open_page(browser, url):
    # bypass_csp only lets the test harness evaluate its probes; the page itself runs under the CSP
    page = browser.new_context(bypass_csp=True, viewport={"width": 1200, "height": 900}, accept_downloads=True).new_page()
    page.set_default_timeout(90_000)  # a shared CI machine can be very slow; nothing here is timed by it
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    started = time.perf_counter()
    page.goto(url)
    page.wait_for_function("window.reviewStats && window.reviewStats.ready")
    page.errors = errors
    page.open_seconds = time.perf_counter() - started
    return page


def wait_saves(page, n):
    try:
        page.wait_for_function(f"window.reviewStats.saveMs.length >= {n}")
    except Exception:
        saved = page.evaluate("window.reviewStats.saveMs.length")
        raise AssertionError(f"{saved} of {n} decisions saved; page says {page.inner_text('#message')!r}, "
                             f"errors {page.errors}") from None


def record(**numbers):
    print("measured:", json.dumps(numbers))
    target = os.environ.get("SELFADAPT_REVIEW_MEASUREMENTS")
    if target:
        with open(target, "a") as f:
            f.write(json.dumps(numbers) + "\n")


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def card_states(page):
    return page.eval_on_selector_all(".card", "cards => cards.map(c => [Number(c.dataset.index), "
                                              "c.querySelector('.state').textContent])")


def test_ten_keyboard_decisions_persist_resume_and_apply(browser, run_dir, tmp_path):
    server = serve(run_dir)
    run = server.app.run
    page = open_page(browser, server.url)
    keys = [run.suspects.keys[r] for r in range(12)]
    started = time.perf_counter()
    for key in ["a", "a", "k", "3", "s", "a", "c"]:
        page.keyboard.press(key)
    page.wait_for_selector("#picker[open]")
    page.keyboard.type("c5")
    page.keyboard.press("Enter")
    for key in ["a", "u", "k", "a", "a"]:  # rank 8 accepted, undone, then kept
        page.keyboard.press(key)
    wait_saves(page, 12)
    seconds = time.perf_counter() - started
    stats = page.evaluate("window.reviewStats")
    classes = run.classes
    suggested = {int(k): classes[run.suspects.suggested[r]] for r, k in enumerate(keys)}
    given = {int(k): classes[run.suspects.given[r]] for r, k in enumerate(keys)}
    expected = {keys[0]: suggested[keys[0]], keys[1]: suggested[keys[1]], keys[2]: given[keys[2]], keys[3]: "c3",
                keys[4]: "", keys[5]: suggested[keys[5]], keys[6]: "c5", keys[7]: given[keys[7]],
                keys[8]: suggested[keys[8]], keys[9]: suggested[keys[9]]}
    rows = {int(r["index"]): r for r in read_rows(run_dir / "review.csv")}
    assert {k: r["label"] for k, r in rows.items()} == {int(k): v for k, v in expected.items()}
    assert rows[int(keys[4])]["decision"] == "skip" and rows[int(keys[7])]["previous"] == ""
    assert all(r["file"].startswith("img/") and r["time"] for r in rows.values())
    shown_before = card_states(page)
    counter = page.inner_text("#counter")
    assert counter.startswith("9 of ") and "1 skipped" in counter
    deadline = time.time() + 5  # the place is saved 250 ms after the last move
    while saved_cursor(run_dir) != keys[10]:
        assert time.time() < deadline, "the cursor was not saved"
        time.sleep(0.05)

    page.reload()
    page.wait_for_function("window.reviewStats && window.reviewStats.ready")
    assert card_states(page) == shown_before and page.inner_text("#counter") == counter
    assert int(page.get_attribute(".card.current", "data-index")) == keys[10]
    stop(server)
    server = serve(run_dir)  # a restart: a new port, the decisions and the place read back from disk
    again = open_page(browser, server.url)
    assert card_states(again) == shown_before and int(again.get_attribute(".card.current", "data-index")) == keys[10]
    assert not page.errors and not again.errors
    stop(server)

    assert main(["apply-review", str(run_dir), "--out", str(tmp_path / "fixed")]) == 0
    fixed = {r["path"].split("/")[-1]: r["label"] for r in read_rows(tmp_path / "fixed" / "labels.csv")}
    original = {r["path"].split("/")[-1]: r["label"] for r in read_rows(run_dir.parent.parent / "labels.csv")} \
        if (run_dir.parent.parent / "labels.csv").exists() else None
    source = {r["path"].split("/")[-1]: r["label"] for r in read_rows(_data_csv(run))}
    assert original is None or original == source
    decided = {rows[int(k)]["file"].split("/")[-1]: v for k, v in expected.items() if v}
    assert fixed == {name: decided.get(name, label) for name, label in source.items()}
    record(what="digits csv run, 10 keyboard decisions", suspects=len(run.suspects),
           open_ms=round(stats["firstRenderMs"], 1), wall_open_s=round(page.open_seconds, 3),
           save_ms_median=round(float(np.median(stats["saveMs"])), 1), save_ms_max=round(max(stats["saveMs"]), 1),
           keyboard_decisions_per_s=round(12 / seconds, 1))


def saved_cursor(run_dir):
    try:
        return json.loads((run_dir / "review-state.json").read_text()).get("cursor")
    except (FileNotFoundError, ValueError):  # not written yet
        return None


def _data_csv(run):
    return run.config.data.dataset.split(":", 1)[1]


def test_two_tabs_lose_no_decision(browser, run_dir):
    server = serve(run_dir)
    keys = [int(k) for k in server.app.run.suspects.keys[:6]]
    first, second = open_page(browser, server.url), open_page(browser, server.url)
    first.keyboard.press("a")  # both tabs opened on rank 1; the first decides it
    wait_saves(first, 1)
    second.keyboard.press("k")  # the second tab still shows rank 1 undecided: refused, not overwritten
    second.wait_for_selector("#message:not([hidden])")
    assert "changed in another tab" in second.inner_text("#message")
    assert read_rows(run_dir / "review.csv")[0]["decision"] == "accept"
    second.keyboard.press("k")  # now on the current version: a deliberate change; on to rank 2
    wait_saves(second, 2)
    first.keyboard.press("a")  # rank 2 in the first tab
    second.keyboard.press("ArrowDown")
    second.keyboard.press("s")  # rank 3 in the second
    wait_saves(first, 2)
    wait_saves(second, 3)
    rows = {int(r["index"]): r for r in read_rows(run_dir / "review.csv")}
    assert {k: rows[k]["decision"] for k in keys[:3]} == {keys[0]: "keep", keys[1]: "accept", keys[2]: "skip"}
    assert rows[keys[0]]["previous"].startswith("accept:") and rows[keys[0]]["version"] == "2"
    stop(server)


def test_the_static_page_downloads_the_same_review_csv(browser, run_dir, tmp_path):
    app = ReviewApp(load_run(run_dir))
    write_static_page(app, tmp_path / "review.html", limit=30)
    page = open_page(browser, (tmp_path / "review.html").as_uri())
    assert page.locator(".card img").first.get_attribute("src").startswith("data:image/png;base64,")
    page.keyboard.press("a")
    page.keyboard.press("a")
    wait_saves(page, 2)
    page.locator(".card").nth(2).get_by_role("button", name="keep given (k)").click()  # the mouse works too
    wait_saves(page, 3)
    page.keyboard.press("2")
    page.keyboard.press("s")
    wait_saves(page, 5)
    with page.expect_download() as download:
        page.click("#download")
    download.value.save_as(tmp_path / "review.csv")
    rows = read_rows(tmp_path / "review.csv")
    assert list(rows[0]) == list(COLUMNS) and len(rows) == 5
    keys = [int(k) for k in app.run.suspects.keys[:5]]
    assert [int(r["index"]) for r in rows] == keys
    assert [r["decision"] for r in rows][:3] == ["accept", "accept", "keep"] and rows[4]["decision"] == "skip"
    assert main(["apply-review", str(run_dir), "--review", str(tmp_path / "review.csv"),
                 "--out", str(tmp_path / "fixed")]) == 0
    changed = {int(r["index"]) for r in read_rows(tmp_path / "fixed" / "changes.csv")}
    assert changed == {int(r["index"]) for r in rows if r["decision"] in ("accept", "relabel")}
    assert not page.errors


def test_a_run_with_100000_suspects_opens_paged(browser, tmp_path):
    """Synthetic: 100,000 feature rows (scikit-learn's digits repeated, with a little noise) whose
    targets all disagree with the given label, so every row is a suspect."""
    truth = write_features(tmp_path / "emb.npz", n=100_000)
    make_run(tmp_path / "run", {"dataset": f"features:{tmp_path / 'emb.npz'}"}, finder=False,
             truth=lambda data: (data.labels.numpy() + 1) % 10)
    del truth
    started = time.perf_counter()
    server = serve(tmp_path / "run")
    startup = time.perf_counter() - started
    page = open_page(browser, server.url)
    assert "100000 suspects" in page.inner_text("#run") and page.locator(".card").count() == 50
    assert page.inner_text(".card.current .features").startswith("d")
    assert "texts: digit image" in page.inner_text(".card.current")
    decided = time.perf_counter()
    for _ in range(20):
        page.keyboard.press("a")
    wait_saves(page, 20)
    seconds = time.perf_counter() - decided
    page.keyboard.press("PageDown")
    page.wait_for_function("document.querySelector('#range').textContent.startsWith('51')")
    stats = page.evaluate("window.reviewStats")
    assert len(read_rows(tmp_path / "run" / "review.csv")) == 20 and not page.errors
    stop(server)
    record(what="100,000 synthetic feature suspects", suspects=100_000, server_start_s=round(startup, 2),
           open_ms=round(stats["firstRenderMs"], 1), wall_open_s=round(page.open_seconds, 3),
           save_ms_median=round(float(np.median(stats["saveMs"])), 1), save_ms_max=round(max(stats["saveMs"]), 1),
           keyboard_decisions_per_s=round(20 / seconds, 1))
