"""The search over settings (issue #32), on the tiny model: the feature cache is built once for a search of
several trials, a killed search resumes without repeating its finished trials, two processes share one storage,
a trial that falls behind is pruned, and bad input is one line before any work."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bertlstm.cli import main
from conftest import one_error, write_csv

pytest.importorskip("optuna", reason="the tune extra")
SPACE = {"layers": ["last", "concat-last-4"], "lstm_units": [8, 16], "lr": {"low": 0.003, "high": 0.03, "log": True}}


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    space = tmp_path / "space.yaml"
    space.write_text(json.dumps(SPACE))
    return {
        "train": write_csv(tmp_path / "train.csv", 120, 1),
        "dev": write_csv(tmp_path / "dev.csv", 40, 2),
        "space": space,
    }


def tune_argv(encoder: str, files: dict[str, Path], output: Path, *more: str) -> list[str]:
    return [
        "tune",
        "--encoder",
        encoder,
        "--train",
        str(files["train"]),
        "--dev",
        str(files["dev"]),
        "--space",
        str(files["space"]),
        "--output",
        str(output),
        "--device",
        "cpu",
        "--no-prepare-graph",
        *more,
    ]


def finished(db: Path) -> int:
    """Completed and pruned trials in a search's SQLite storage."""
    if not db.is_file():
        return 0
    try:
        with sqlite3.connect(db, timeout=30) as connection:
            query = "select count(*) from trials where state in ('COMPLETE', 'PRUNED')"
            return connection.execute(query).fetchone()[0]
    except sqlite3.OperationalError:  # its tables not made yet
        return 0


def test_a_search_builds_the_feature_cache_once_for_all_its_trials(
    tiny_encoder_4: str, files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, logs
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("BERTLSTM_CACHE", str(cache))

    def train_run(*args, **kwargs):
        raise AssertionError("the best trial ran in this process: its model is kept, not trained again")

    monkeypatch.setattr("bertlstm.runs.train_run", train_run)
    assert main([*tune_argv(tiny_encoder_4, files, tmp_path / "best"), "--trials", "5", "--json"]) == 0
    entries = [p for p in cache.iterdir() if len(p.name) == 32]
    assert len(entries) == 4  # train and dev, for each of the two layer choices: never once per trial
    assert logs.text.count("feature cache: encoded") == 2  # once: `last` is taken from concat-last-4's entries
    assert logs.text.count("from a wider entry") == 2 and "best: trial" in logs.text
    search = json.loads((tmp_path / "best" / "search.json").read_text())
    assert len(search["trials"]) == 5 and set(SPACE) <= set(search["best"]["params"])
    meta = json.loads((tmp_path / "best" / "config.json").read_text())
    for name, value in search["best"]["params"].items():
        assert {**meta["model"], **meta["training"]}[name] == value  # the best settings, in the folder's config
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["dev_accuracy"] == pytest.approx(search["best"]["value"])
    assert main(["report", str(tmp_path / "best"), "--html", str(tmp_path / "report.html")]) == 0
    assert "The search that chose these settings" in (tmp_path / "report.html").read_text()


def test_a_killed_search_resumes_without_repeating_its_finished_trials(
    tiny_encoder: str, files: dict[str, Path], tmp_path: Path
) -> None:
    files["space"].write_text(json.dumps({**SPACE, "layers": "last"}))  # the tiny encoder's two layers
    argv = [sys.executable, "-m", "bertlstm.cli", *tune_argv(tiny_encoder, files, tmp_path / "best"), "--trials", "6"]
    process = subprocess.Popen(argv, stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    db = tmp_path / "best.search.db"
    deadline = time.monotonic() + 240
    while finished(db) < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    first = finished(db)
    assert 2 <= first < 6 and not (tmp_path / "best").exists()
    with sqlite3.connect(db) as connection:
        before = connection.execute("select trial_id, state from trials where state = 'COMPLETE'").fetchall()
    assert main([*tune_argv(tiny_encoder, files, tmp_path / "best"), "--trials", "6"]) == 0
    assert finished(db) == 6  # the finished ones kept, only the rest run
    with sqlite3.connect(db) as connection:
        after = connection.execute("select trial_id, state from trials where state = 'COMPLETE'").fetchall()
    assert set(before) <= set(after) and (tmp_path / "best" / "search.json").is_file()


def test_two_processes_share_one_search(tiny_encoder: str, files: dict[str, Path], tmp_path: Path) -> None:
    files["space"].write_text(json.dumps({**SPACE, "layers": "last"}))
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "bertlstm.cli", *tune_argv(tiny_encoder, files, tmp_path / f"best-{i}")]
            + ["--trials", "6", "--storage", storage, "--jobs", "1", "-q"],  # two commands, a process each
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    errors = [p.communicate(timeout=600)[1] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], errors
    assert finished(tmp_path / "shared.db") in (6, 7)  # the last trials of two processes may end together
    best = [json.loads((tmp_path / f"best-{i}" / "search.json").read_text())["best"] for i in range(2)]
    assert {b["number"] for b in best} <= {t for t in range(8)}


def test_one_search_runs_its_trials_in_two_processes_and_saves_the_best_whichever_ran_it(
    tiny_encoder_4: str, files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, logs
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("BERTLSTM_CACHE", str(cache))

    def train_run(*args, **kwargs):
        raise AssertionError("the best trial's model is kept by the process that ran it, not trained again")

    monkeypatch.setattr("bertlstm.runs.train_run", train_run)
    assert main([*tune_argv(tiny_encoder_4, files, tmp_path / "best"), "--trials", "8", "--jobs", "2"]) == 0
    search = json.loads((tmp_path / "best" / "search.json").read_text())
    assert len(search["trials"]) in (8, 9)  # one more only where both start their last trial in the same instant
    assert len({t["process"] for t in search["trials"]}) == 2
    entries = [p for p in cache.iterdir() if len(p.name) == 32]
    assert len(entries) == 4 and logs.text.count("feature cache: encoded") == 2  # all built first, in one pass
    meta = json.loads((tmp_path / "best" / "config.json").read_text())
    for name, value in search["best"]["params"].items():
        assert {**meta["model"], **meta["training"]}[name] == value


def test_a_killed_search_leaves_none_of_its_processes_running(
    tiny_encoder: str, files: dict[str, Path], tmp_path: Path
) -> None:
    files["space"].write_text(json.dumps({**SPACE, "layers": "last"}))
    argv = [sys.executable, "-m", "bertlstm.cli", *tune_argv(tiny_encoder, files, tmp_path / "best")]
    process = subprocess.Popen([*argv, "--trials", "50", "--jobs", "2"], stderr=subprocess.DEVNULL)
    db = tmp_path / "best.search.db"
    deadline = time.monotonic() + 240
    while finished(db) < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    time.sleep(2)
    count = finished(db)
    time.sleep(8)  # a tiny trial takes about a second: a helper still running would have added some
    assert finished(db) == count < 50


def test_a_trial_that_falls_behind_is_pruned_after_an_epoch(tiny_encoder: str, files: dict[str, Path]) -> None:
    import optuna

    from bertlstm import RunConfig
    from bertlstm.tune import Objective, default_space

    config = RunConfig.from_dict(
        {"output": "unused", "model": {"encoder": tiny_encoder}, "data": {"train": str(files["train"])}}
    )
    data = config.task_spec.read_run_data(config.data, config.model, config.training)

    class Behind:
        """A trial whose every report is behind the others'."""

        params: dict = {}
        reports: list = []

        def suggest_categorical(self, name, values):
            return values[0]

        def suggest_int(self, name, low, high, log=False):
            return low

        def suggest_float(self, name, low, high, log=False):
            return low

        def report(self, value, step):
            self.reports.append(step)

        def should_prune(self):
            return True

        def set_user_attr(self, key, value):
            pass

    trial = Behind()
    with pytest.raises(optuna.TrialPruned):
        Objective(config, default_space(config.model), data, optuna)(trial)
    assert trial.reports == [1]  # stopped after its first epoch


@pytest.mark.parametrize(
    ("space", "more", "message"),
    [
        ({"lstm_unitz": [8, 16]}, [], "space.yaml: 'lstm_unitz' is not a setting a search can vary"),
        ({"lstm_units": {"low": 0, "high": 16}}, [], "'lstm_units' cannot be 0"),
        ({"dropout": {"low": 0.5, "high": 0.1}}, [], "low 0.5 must be below high 0.1"),
        ({"encoder": ["minilm"]}, [], "'encoder' is not a setting a search can vary"),
        ({"layers": ["last", "concat-last-4"]}, [], "'layers' cannot be 'concat-last-4'"),
        ({}, ["--storage", "sqlite:////no/such/folder/search.db"], "cannot open the search's storage"),
        ({}, ["--timeout", "soon"], "--timeout must be a time such as 90s"),
        ({"lr": {"low": 0, "high": 0.1, "log": True}}, [], "a range on a log scale starts above 0"),
        ({"lstm_units": []}, [], "an empty list leaves nothing to choose"),
        ({"lstm_units": [8, 16]}, ["--lstm-units", "8"], "is set for the run and named in the search space"),
    ],
)
def test_bad_input_is_one_line_before_any_work(
    tiny_encoder: str, files: dict[str, Path], tmp_path: Path, capsys, space: dict, more: list, message: str
) -> None:
    files["space"].write_text(json.dumps(space))
    assert main([*tune_argv(tiny_encoder, files, tmp_path / "best"), *more]) == 2
    one_error(capsys, message)
    assert not (tmp_path / "best").exists()


def test_a_search_without_dev_data_is_refused_unless_told_to_hold_some_out(
    tiny_encoder: str, files: dict[str, Path], tmp_path: Path, capsys
) -> None:
    files["space"].write_text(json.dumps({**SPACE, "layers": "last"}))
    argv = [a for a in tune_argv(tiny_encoder, files, tmp_path / "best") if a not in ("--dev", str(files["dev"]))]
    assert main([*argv, "--trials", "2"]) == 2
    one_error(capsys, "a search compares its trials on dev data", "--dev-fraction")
    assert main([*argv, "--trials", "2", "--dev-fraction", "0.2"]) == 0


def test_settings_given_for_the_run_are_fixed_in_every_trial(
    tiny_encoder: str, files: dict[str, Path], tmp_path: Path
) -> None:
    files["space"].write_text(json.dumps({"layers": "last", "lr": {"low": 0.003, "high": 0.03, "log": True}}))
    output = tmp_path / "new" / "folders" / "best"  # the storage beside it: its folders are made first
    argv = tune_argv(tiny_encoder, files, output, "--trials", "3", "--lstm-units", "12", "--dropout", "0.1")
    assert main(argv) == 0
    search = json.loads((output / "search.json").read_text())
    searched = {name for t in search["trials"] for name in t["params"]}
    assert "lr" in searched and not searched & {"lstm_units", "dropout"}  # given for the run: never searched
    meta = json.loads((output / "config.json").read_text())
    assert meta["model"]["lstm_units"] == 12 and meta["model"]["dropout"] == 0.1
    assert meta["training"]["progress"] is True  # the trials' quiet is theirs, not the model's
