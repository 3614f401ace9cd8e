"""The review server over real HTTP: fixed routes only (404 for anything else), localhost only,
every posted decision validated, paging and filters against a plain reference."""
import http.client
import json
import re
import signal
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
from review_support import make_run, write_digit_pngs

from selfadapt.apps.review.app import ReviewApp
from selfadapt.apps.review.server import ReviewServer
from selfadapt.apps.review.static_page import write_static_page
from selfadapt.apps.review.suspects import load_run
from selfadapt.cli import main


@pytest.fixture(scope="module")
def digits_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits-run")
    make_run(folder, {"dataset": "digits", "noise": "symmetric-exclusive", "noise_rate": 0.2})
    (folder / "checkpoint.pt").write_bytes(b"weights")
    server = ReviewServer(ReviewApp(load_run(folder)))
    server.start_background()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def csv_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("csv-data")
    truth = write_digit_pngs(root, per_class=6, wrong={0, 7, 20, 33})
    data = make_run(root / "run", {"dataset": f"csv:{root / 'labels.csv'}"},
                    truth=lambda data: [truth[f] for f in data.dataset.train.files])
    server = ReviewServer(ReviewApp(load_run(root / "run")))
    server.start_background()
    yield server, root, data
    server.shutdown()
    server.server_close()


def request(server, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    sent = {"Host": f"127.0.0.1:{server.port}", **(headers or {})}
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
        sent.setdefault("Content-Type", "application/json")
    connection.request(method, path, body=body, headers=sent)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, data


@pytest.mark.parametrize("path", [
    "/../../etc/passwd", "/..%2f..%2fetc%2fpasswd", "/%2e%2e/%2e%2e/etc/passwd", "//etc/passwd", "/etc/passwd",
    "/run/checkpoint.pt", "/run/targets.npy", "/run/../config.json", "/run/%2e%2e/run/config.json",
    "/run/./config.json", "/thumb/../run/config.json", "/review.js/../review.js", "/page/index.html",
    "/selfadapt/apps/review/page/review.js", "/thumb/99999999.png", "/thumb/5", "/image/5", "/api/nothing",
    "/run/" + "%2e%2e%2f" * 6 + "etc/passwd", "http://evil.example/etc/passwd", "/run/C:\\Windows\\win.ini",
])
def test_anything_but_the_fixed_routes_is_404(digits_server, path):
    status, _ = request(digits_server, "GET", path)
    assert status == 404


def test_the_page_and_the_runs_own_files_are_served(digits_server):
    for path in ("/", "/review.js", "/review.css", "/run/config.json", "/api/meta"):
        assert request(digits_server, "GET", path)[0] == 200
    key = load_key(digits_server)
    status, png = request(digits_server, "GET", f"/thumb/{key}.png")
    assert status == 200 and png[:4] == b"\x89PNG"


def load_key(server, rank=0):
    return int(server.app.run.suspects.keys[rank])


def test_requests_for_another_host_or_from_another_origin_are_refused(digits_server):
    assert request(digits_server, "GET", "/api/meta", headers={"Host": "evil.example"})[0] == 403
    body = {"index": load_key(digits_server), "decision": "accept", "version": 0}
    assert request(digits_server, "POST", "/api/decision", body, {"Origin": "http://evil.example"})[0] == 403
    form = json.dumps(body).encode()  # a cross-site form posts text/plain
    assert request(digits_server, "POST", "/api/decision", form, {"Content-Type": "text/plain"})[0] == 403
    assert not (digits_server.app.run.path / "review.csv").exists()


@pytest.mark.parametrize("body, status, message", [
    ({"index": 10 ** 7, "decision": "accept", "version": 0}, 400, "no sample"),
    ({"index": "KEY", "decision": "relabel", "label": "eleven", "version": 0}, 400, "unknown class"),
    ({"index": "KEY", "decision": "burn", "version": 0}, 400, "unknown decision"),
    ({"index": "KEY", "decision": "accept", "version": "0"}, 400, "must be integers"),
    ([1, 2], 400, "JSON object"),
    (b"{not json", 400, ""),
])
def test_every_posted_decision_is_validated(digits_server, body, status, message):
    if isinstance(body, dict) and body["index"] == "KEY":
        body = {**body, "index": load_key(digits_server, 5)}
    got, data = request(digits_server, "POST", "/api/decision", body, {"Content-Type": "application/json"})
    assert got == status and message in json.loads(data)["error"]


def test_a_stale_version_is_a_409_with_the_current_row(digits_server):
    key = load_key(digits_server, 3)
    status, data = request(digits_server, "POST", "/api/decision", {"index": key, "decision": "skip", "version": 0})
    assert status == 200 and json.loads(data)["item"]["version"] == 1
    status, data = request(digits_server, "POST", "/api/decision", {"index": key, "decision": "keep", "version": 0})
    assert status == 409 and json.loads(data)["current"]["decision"] == "skip"
    request(digits_server, "POST", "/api/decision", {"index": key, "decision": None, "version": 1})


def test_pages_and_filters_match_a_plain_reference(digits_server):
    run = digits_server.app.run
    s = run.suspects
    assert np.all(np.diff(s.score) <= 0)
    given, suggested = int(s.given[0]), int(s.suggested[0])
    reference = [int(k) for k, g, t in zip(s.keys, s.given, s.suggested) if g == given and t == suggested]
    status, data = request(digits_server, "GET", f"/api/items?given={given}&suggested={suggested}&limit=500")
    assert [item["index"] for item in json.loads(data)["items"]] == reference
    by_class = [int(k) for k, g, t in zip(s.keys, s.given, s.suggested) if 4 in (g, t)]
    pages = [json.loads(request(digits_server, "GET", f"/api/items?cls=4&offset={o}&limit=7")[1]) for o in range(0, 70, 7)]
    assert [i["index"] for p in pages for i in p["items"]] == by_class and pages[0]["total"] == len(by_class)
    first = json.loads(request(digits_server, "GET", "/api/items?limit=5")[1])["items"][0]
    assert first["rank"] == 1 and first["top"][0][0] == first["suggested"]
    assert abs(first["score"] - (1 - run.targets[s.rows[0], s.given[0]])) < 1e-3


def test_todo_filter_and_resume_point_skip_decided_samples(digits_server):
    keys = [load_key(digits_server, r) for r in range(3)]
    for key in keys[:2]:
        request(digits_server, "POST", "/api/decision", {"index": key, "decision": "accept", "version": 0})
    todo = json.loads(request(digits_server, "GET", "/api/items?status=todo&limit=3")[1])
    assert todo["items"][0]["index"] == keys[2] and todo["counts"]["accept"] == 2
    around = json.loads(request(digits_server, "GET", "/api/items?around=todo&limit=2")[1])
    assert around["offset"] == 2 and around["items"][0]["index"] == keys[2]
    assert request(digits_server, "POST", "/api/state", {"cursor": keys[2], "filters": {"status": "todo"}})[0] == 200
    assert json.loads(request(digits_server, "GET", "/api/meta")[1])["state"]["cursor"] == keys[2]
    for key in keys[:2]:
        request(digits_server, "POST", "/api/decision", {"index": key, "decision": None, "version": 1})


def test_originals_of_csv_data_are_the_files_themselves(csv_server):
    server, root, data = csv_server
    key = load_key(server)
    row = server.app.row_of[key]
    status, body = request(server, "GET", f"/image/{key}")
    assert status == 200 and body == (root / data.dataset.train.files[row]).read_bytes()
    meta = json.loads(request(server, "GET", "/api/meta")[1])
    assert meta["originals"] and meta["kind"] == "image"
    item = json.loads(request(server, "GET", f"/api/items?around={key}")[1])["items"][0]
    assert item["file"] == data.dataset.train.files[row] and item["file"].startswith("img/")


def test_the_static_page_is_one_self_contained_file(tmp_path, digits_server):
    size, count = write_static_page(digits_server.app, tmp_path / "review.html", limit=20)
    html = (tmp_path / "review.html").read_text()
    assert count == 20 and size == len(html.encode())
    assert html.count("data:image/png;base64,") == 20
    assert 'src="review.js"' not in html and 'href="review.css"' not in html and "http://" not in html
    assert "</script>" not in html.split('id="review-data"')[1].split("</script>")[0][1:]


def test_bad_command_lines_are_one_line_errors(tmp_path, capsys):
    assert main(["review", str(tmp_path)]) == 2
    assert "is not a run directory" in capsys.readouterr().err
    assert main(["review", str(tmp_path), "--port", "70000"]) == 2
    assert main(["review", str(tmp_path), "--limit", "5"]) == 2
    assert main(["apply-review", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_the_command_serves_on_a_free_port_and_stops_on_ctrl_c(digits_server, tmp_path):
    run = str(digits_server.app.run.path)
    process = subprocess.Popen([sys.executable, "-m", "selfadapt", "review", run, "--no-browser"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line).group(0)
        assert url != digits_server.url and "suspected label errors" in line
        with urllib.request.urlopen(url + "api/meta", timeout=10) as response:
            assert json.loads(response.read())["suspects"] == len(digits_server.app.run.suspects)
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0 and "every decision is saved" in err
    assert main(["review", run, "--static", str(tmp_path / "page.html"), "--limit", "5"]) == 0
    assert (tmp_path / "page.html").read_text().count("data:image/png;base64,") == 5
