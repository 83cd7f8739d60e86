"""The HTTP server, started for real on a loopback port and used over HTTP, bad requests included."""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bertlstm import BertLSTMClassifier, open_model
from conftest import make_multilabel, make_sentiment, make_tagged

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``bertlstm serve`` in a child process."""

    def __init__(self, model: Path, *options: str) -> None:
        self.port = free_port()
        command = [sys.executable, "-m", "bertlstm.cli", "serve", "--model", str(model), "--port", str(self.port)]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.log = tempfile.TemporaryFile("w+")  # read after the fact; a pipe nobody reads would fill and block
        self.process = subprocess.Popen([*command, *options], env=env, stderr=self.log, text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if self.request("GET", "/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the server did not start: {self.output()[-2000:]}")

    def request(
        self, method: str, path: str, body: Any = None, raw: bytes | None = None, **headers: str
    ) -> tuple[int, Any]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        connection.request(method, path, body=data, headers={"Content-Type": "application/json", **headers})
        response = connection.getresponse()
        text = response.read().decode()
        connection.close()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text

    def stop(self) -> bool:
        """SIGTERM; True when the server shut down by it (uvicorn re-raises the signal once it is done)."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60) in (0, -signal.SIGTERM)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()


def train(encoder: str, folder: Path, multi: bool) -> Path:
    texts, labels = make_multilabel(120, 1) if multi else make_sentiment(120, 1)
    labels = [label.split(",") for label in labels] if multi else labels
    clf = BertLSTMClassifier(encoder=encoder, lstm_units=8, epochs=2, lr=1e-2, multi_label=multi, progress=False)
    return clf.fit(texts, labels).save_pretrained(folder)


@pytest.fixture(scope="module")
def model(tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(tiny_encoder, tmp_path_factory.mktemp("served") / "model", multi=False)


@pytest.fixture(scope="module")
def server(model: Path) -> Iterator[Server]:
    server = Server(model, "--max-batch", "8", "--max-chars", "200", "--max-body-bytes", "4000", "--max-wait-ms", "20")
    yield server
    assert server.stop()


def test_predict_health_metadata_and_docs(server: Server, model: Path) -> None:
    texts = ["good film", "awful boring plot", "it was fine"]
    status, answer = server.request("POST", "/predict", {"texts": texts})
    assert status == 200 and len(answer["predictions"]) == 3
    expected = open_model(model, backend="torch", device="cpu").predict_proba(texts)
    for row, proba in zip(answer["predictions"], expected, strict=True):
        assert row["label"] == ["neg", "pos"][int(proba.argmax())]
        np.testing.assert_allclose([row["probabilities"]["neg"], row["probabilities"]["pos"]], proba, atol=1e-5)
    assert server.request("GET", "/health")[1]["status"] == "ok"
    metadata = server.request("GET", "/metadata")[1]
    assert metadata["labels"]["names"] == ["neg", "pos"] and metadata["mode"] == "frozen"
    assert metadata["max_length"] == 128 and metadata["format_version"] == 3 and metadata["limits"]["max_batch"] == 8
    assert "/predict" in server.request("GET", "/openapi.json")[1]["paths"]
    assert server.request("GET", "/docs")[0] == 404  # its scripts load from a CDN: only with --docs


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "not valid JSON"),
        (json.dumps({"texts": [1, 2]}).encode(), 422, "texts.0"),
        (json.dumps({"text": "a"}).encode(), 422, "texts"),
        (json.dumps({"texts": "good film"}).encode(), 422, "texts"),
        (json.dumps({"texts": []}).encode(), 422, "texts is empty"),
        (json.dumps({"texts": ["x"] * 9}).encode(), 422, "at most 8"),
        (json.dumps({"texts": ["x" * 201]}).encode(), 422, "more than 200 characters"),
        (json.dumps({"texts": ["  "]}).encode(), 422, "is empty"),
        (json.dumps({"texts": ["x" * 150] * 30}).encode(), 413, "over 4000 bytes"),
    ],
)
def test_bad_requests_get_a_clear_4xx(server: Server, body: bytes, status: int, message: str) -> None:
    got, answer = server.request("POST", "/predict", raw=body)
    assert got == status and message in answer["detail"], answer


def test_an_oversize_body_without_a_length_is_refused(server: Server) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    chunks = iter([b'{"texts": ["', b"x" * 3000, b"x" * 3000, b'"]}'])
    connection.request(
        "POST", "/predict", body=chunks, headers={"Content-Type": "application/json"}, encode_chunked=True
    )
    response = connection.getresponse()
    assert response.status == 413 and "over 4000 bytes" in json.loads(response.read())["detail"]


def test_concurrent_requests_share_forward_passes_and_bad_ones_harm_no_one(server: Server) -> None:
    before = server.request("GET", "/health")[1]
    good = [{"texts": [f"good film number {i}"]} for i in range(24)]
    bad = [{"texts": []}, {"texts": [7]}, {"texts": ["x" * 500]}] * 4
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda body: server.request("POST", "/predict", body), good + bad))
    assert [status for status, _ in answers[: len(good)]] == [200] * len(good)
    assert all(status == 422 for status, _ in answers[len(good) :])
    after = server.request("GET", "/health")[1]
    passes, requests = after["forward_passes"] - before["forward_passes"], after["requests"] - before["requests"]
    assert requests == len(good) and passes < requests  # several requests answered by one forward pass


def test_multi_label_models_answer_label_sets(tiny_encoder: str, tmp_path: Path) -> None:
    server = Server(train(tiny_encoder, tmp_path / "multi", multi=True))
    try:
        status, answer = server.request("POST", "/predict", {"texts": ["good movie", "sad film"]})
        assert status == 200 and all(isinstance(row["labels"], list) for row in answer["predictions"])
        assert set(answer["predictions"][0]["probabilities"]) == {"cinema", "neg", "pos"}
    finally:
        assert server.stop()


def test_sigterm_answers_requests_in_flight(model: Path) -> None:
    server = Server(model, "--max-wait-ms", "1500", "--batch-size", "64")  # a request waits 1.5 s for company
    answers: list[tuple[int, Any]] = []
    thread = threading.Thread(target=lambda: answers.append(server.request("POST", "/predict", {"texts": ["good"]})))
    thread.start()
    time.sleep(0.5)  # the request is now in flight, waiting in the batcher
    assert server.stop()
    thread.join(timeout=30)
    assert answers and answers[0][0] == 200 and answers[0][1]["predictions"][0]["label"] in ("neg", "pos")


def test_a_missing_model_is_one_error_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bertlstm.cli", "serve", "--model", str(tmp_path / "nope"), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith("error: model folder")


class Flaky:
    """A back end whose forward pass fails when a text says so."""

    def answer(self, texts: list[str]) -> list[dict[str, Any]]:
        if "boom" in texts:
            raise RuntimeError("the back end broke")
        return [{"label": "pos", "probabilities": {"neg": 0.25, "pos": 0.75}} for _ in texts]

    def metadata(self) -> dict[str, Any]:
        return {"backend": "test"}


def test_a_failed_forward_pass_is_a_logged_500_and_the_server_goes_on(caplog) -> None:
    from fastapi.testclient import TestClient

    from bertlstm.deploy.config import ServeConfig
    from bertlstm.deploy.serving import create_app

    with TestClient(create_app(ServeConfig(model="unused", max_wait_ms=0), predictor=Flaky())) as client:
        with caplog.at_level("ERROR", logger="bertlstm"):
            failed = client.post("/predict", json={"texts": ["boom"]})
        assert failed.status_code == 500 and failed.json() == {"detail": "internal error; see the server log"}
        assert any("forward pass over 1 texts failed" in r.getMessage() for r in caplog.records)
        answer = client.post("/predict", json={"texts": ["fine"]})
        assert answer.status_code == 200 and answer.json()["predictions"][0] == {
            "label": "pos",
            "probabilities": {"neg": 0.25, "pos": 0.75},
        }


# --- round two (issue #21): the address, the key, the docs page, shutdown -------------------------------------
def serve_error(*args: str, **env: str) -> str:
    """``bertlstm serve`` that must fail: its one line of error (exit 2), after at most a few seconds."""
    result = subprocess.run(
        [sys.executable, "-m", "bertlstm.cli", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_a_bad_or_busy_port_is_one_line_before_the_model_loads(tmp_path: Path) -> None:
    assert "--port must be at most 65535" in serve_error("--model", str(tmp_path / "nope"), "--port", "99999")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        assert f"cannot listen on 127.0.0.1:{port}" in serve_error("--model", str(tmp_path / "nope"), "--port", port)


def test_a_public_address_needs_a_key_or_insecure(tmp_path: Path) -> None:
    message = serve_error("--model", str(tmp_path / "nope"), "--host", "0.0.0.0", "--port", str(free_port()))
    assert "without an API key lets anyone who reaches it use the model" in message and "--api-key-file" in message
    allowed = serve_error(
        "--model", str(tmp_path / "nope"), "--host", "0.0.0.0", "--port", str(free_port()), "--insecure"
    )
    assert "error: model folder" in allowed  # past the key check, to the model
    (tmp_path / "key").write_text("short\n")
    assert "too short" in serve_error("--model", str(tmp_path / "nope"), "--api-key-file", str(tmp_path / "key"))


def test_with_a_key_every_route_but_health_needs_it(model: Path, tmp_path: Path) -> None:
    key = "a-long-enough-secret-key"
    (tmp_path / "key").write_text(key + "\n")
    server = Server(model, "--api-key-file", str(tmp_path / "key"))
    try:
        assert server.request("POST", "/predict", {"texts": ["good"]})[0] == 401
        assert server.request("GET", "/metadata", Authorization="Bearer wrong-key-of-some-length")[0] == 401
        assert server.request("POST", "/predict", {"texts": ["good"]}, Authorization=f"Bearer {key}")[0] == 200
        assert server.request("GET", "/metadata", **{"X-API-Key": key})[0] == 200
        assert server.request("GET", "/health")[0] == 200  # for load balancers
    finally:
        assert server.stop()


def test_shutdown_answers_what_it_can_and_refuses_the_rest_at_once() -> None:
    """A slow back end and more queued work than the grace period allows: every request is answered (200) or
    refused (ShuttingDown, a 503), none fails, and it is over within the grace period."""
    import asyncio

    from bertlstm.deploy.batcher import MicroBatcher, ShuttingDown

    class Slow:
        def answer(self, texts: list[str]) -> list[Any]:
            time.sleep(0.2)
            return [{"label": "pos"} for _ in texts]

    async def scenario() -> tuple[list[Any], float]:
        batcher = MicroBatcher(Slow(), batch_size=2, max_wait=0.05, queue_size=64, grace=1.0)  # type: ignore[arg-type]
        batcher.start()
        requests = [asyncio.ensure_future(batcher.predict([f"text {i}"])) for i in range(40)]
        await asyncio.sleep(0.1)
        start = time.monotonic()
        batcher.drain()
        with pytest.raises(ShuttingDown):
            await batcher.predict(["too late"])  # nothing new is taken
        results = await asyncio.gather(*requests, return_exceptions=True)
        await batcher.stop()
        return results, time.monotonic() - start

    results, seconds = asyncio.run(scenario())
    answered = [r for r in results if isinstance(r, list)]
    refused = [r for r in results if isinstance(r, ShuttingDown)]
    assert len(answered) + len(refused) == 40 and answered and refused and seconds < 1.0


# --- the page, in a real browser ---------------------------------------------------------------------------
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium from the OS packages, driven by Selenium (nothing downloaded)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="the page test needs selenium (the dev extra)")
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.skip("no headless Chromium here: apt-get install chromium chromium-driver (CI installs them)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def try_in_browser(driver: Any, url: str, text: str, key: str | None = None) -> tuple[str, list[str]]:
    """Open the page, (give the key,) type ``text``, submit; the label shown and the bars' rows (a tagger's
    page: the entities marked in the text)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    if key is not None:
        WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "key-row").is_displayed())
        driver.find_element(By.ID, "key").send_keys(key)
    driver.find_element(By.ID, "text").send_keys(text)
    driver.find_element(By.ID, "submit").click()
    label = WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "label").text)
    rows = driver.find_elements(By.CSS_SELECTOR, ".bar-row") or driver.find_elements(By.CSS_SELECTOR, "mark")
    return label, [row.text for row in rows]


def test_the_page_shows_a_label_and_its_probabilities_in_a_browser(server: Server, model: Path, browser) -> None:
    status, page = server.request("GET", "/")
    assert status == 200 and "<textarea" in page and "https://" not in page and " src=" not in page  # no CDN
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/", timeout=30) as response:
        policy = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "connect-src 'self'" in policy  # and the page still works:
    label, bars = try_in_browser(browser, f"http://127.0.0.1:{server.port}/", "a wonderful , moving film")
    expected = open_model(model).answer(["a wonderful , moving film"])[0]
    assert label == expected["label"]
    assert len(bars) == len(expected["probabilities"]) and bars[0].startswith(expected["label"])
    if importlib.util.find_spec("captum") is not None:  # why: the words shaded by their scores
        from selenium.webdriver.common.by import By

        why = open_model(model).explain(["a wonderful , moving film"])[0]["explanation"]
        words = browser.find_elements(By.CSS_SELECTOR, "#why span.word")
        assert [w.text for w in words] == [w["word"] for w in why]
        for shown, word in zip(words, why, strict=True):
            assert abs(float(shown.get_attribute("data-score")) - word["score"]) < 1e-6
            assert ("rgba(40, 160, 70" if word["score"] >= 0 else "rgba(210, 50, 50") in shown.get_attribute("style")


def test_the_page_asks_for_the_key_a_server_needs(model: Path, tmp_path: Path, browser) -> None:
    key = "a-long-enough-secret-key"
    (tmp_path / "key").write_text(key + "\n")
    server = Server(model, "--api-key-file", str(tmp_path / "key"))
    try:
        assert server.request("GET", "/")[0] == 200  # the page holds no data; what it calls needs the key
        label, _ = try_in_browser(browser, f"http://127.0.0.1:{server.port}/", "a dull film", key=key)
        assert label == open_model(model).answer(["a dull film"])[0]["label"]
    finally:
        assert server.stop()


def test_the_page_marks_a_taggers_entities_in_a_browser(tiny_encoder: str, tmp_path: Path, browser) -> None:
    from bertlstm import BertLSTMTagger

    tagger = BertLSTMTagger(encoder=tiny_encoder, epochs=6, lstm_units=16, lr=1e-2, progress=False)
    folder = tagger.fit(*make_tagged(120, 1)).save_pretrained(tmp_path / "tagger")
    text = "the actor was good in this scene story"
    expected = open_model(folder).answer([text])[0]["entities"]
    server = Server(folder)
    try:
        label, marks = try_in_browser(browser, f"http://127.0.0.1:{server.port}/", text)
    finally:
        assert server.stop()
    assert expected, "the tagger learnt no entity: the test shows nothing"
    assert label == ", ".join(f"{e['text']} ({e['type']})" for e in expected)
    assert ["".join(m.split()) for m in marks] == ["".join((e["text"] + e["type"]).split()) for e in expected]
