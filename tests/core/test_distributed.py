"""Several processes on CPU (gloo): torchrun runs the same code, and its results equal one process's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import torch
from safetensors.torch import load_file

from bertlstm import BertLSTMClassifier
from bertlstm.tasks.tag.data import read_tagged
from conftest import make_sentiment

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}

STEP = """
import sys
import torch
from safetensors.torch import save_file
from transformers import AutoModel, AutoTokenizer
from bertlstm import ModelConfig, TrainConfig
from bertlstm.tasks.classify.data import TokenDataset, tokenize
from bertlstm.tasks.classify.model import BertLSTMModel
from bertlstm.core.distributed import end_process, leave_process_group
from bertlstm.core.training import Trainer
from bertlstm.core.inference import as_tensors

encoder_dir, out, sizes = sys.argv[1], sys.argv[2], [int(n) for n in sys.argv[3].split(",")]
texts = [f"good film {'very ' * (i % 5)}bad plot {i}" for i in range(sum(sizes))]
torch.manual_seed(0)
config = ModelConfig(encoder=encoder_dir, mode="finetune", lstm_units=8, dropout=0.0)
encoder = AutoModel.from_pretrained(encoder_dir, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
model = BertLSTMModel(config, encoder, num_labels=2)
if len(sys.argv) > 4:  # where the weights before the step go
    save_file({k: v.contiguous().clone() for k, v in model.state_dict().items()}, sys.argv[4])
ids = tokenize(AutoTokenizer.from_pretrained(encoder_dir), texts, 32)
data = TokenDataset(ids, [i % 2 for i in range(len(texts))])
settings = TrainConfig(device="cpu", max_grad_norm=0, warmup_ratio=0.0, batch_size=max(sizes))


class PlainSteps(Trainer):
    # Adam's first step is lr * sign(gradient), which a gradient near zero flips; SGD's is the gradient itself.
    def create_optimizer(self):
        return torch.optim.SGD(self.base_model.parameters(), lr=1.0)


trainer = PlainSteps(model, settings, score=None)
trainer.prepare(data)
rank = trainer.shard.rank
start = sum(sizes[:rank])  # this process's examples: its own slice of the same data
mine = list(range(start, start + sizes[rank])) if trainer.shard.world > 1 else list(range(len(texts)))
model.train()
trainer.train_step([as_tensors(data.collate([data[i] for i in mine]))])
if trainer.shard.is_main:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out)
leave_process_group()
end_process(0)
"""


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    found = {}
    for name, n, seed in (("train", 300, 1), ("dev", 50, 2)):
        texts, labels = make_sentiment(n, seed)
        found[name] = tmp_path / f"{name}.csv"
        pd.DataFrame({"text": texts, "label": labels}).to_csv(found[name], index=False)
    return found


@pytest.mark.parametrize("sizes", ["8,8", "7,9"])
def test_two_processes_make_the_step_of_one_over_both_batches(tiny_encoder: str, tmp_path: Path, sizes: str) -> None:
    script = tmp_path / "step.py"
    script.write_text(STEP)
    two, one, before = (tmp_path / f"{name}.safetensors" for name in ("two", "one", "before"))
    subprocess.run([*TORCHRUN, str(script), tiny_encoder, str(two), sizes], env=ENV, check=True, timeout=300)
    command = [sys.executable, str(script), tiny_encoder, str(one), sizes, str(before)]
    subprocess.run(command, env=ENV, check=True, timeout=300)
    a, b, start = load_file(two), load_file(one), load_file(before)
    assert sum(not torch.equal(b[k], start[k]) for k in b) > 10  # the step moved most weights ...
    for key in a:  # ... and two processes moved them as one process over both batches does
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-5, msg=key)


def test_a_two_process_run_equals_its_single_process_evaluation(tiny_encoder: str, files, tmp_path: Path) -> None:
    env = {**ENV, "BERTLSTM_CACHE": str(tmp_path / "shared-cache")}
    args = ["-m", "bertlstm", "train", "--train", str(files["train"]), "--dev", str(files["dev"])]
    args += ["--encoder", tiny_encoder, "--epochs", "2", "--device", "cpu", "--output", str(tmp_path / "model")]
    result = subprocess.run([*TORCHRUN, *args], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("model saved to") == 1 and "by 2 processes" in result.stderr  # rank 0 only speaks
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("model")) == ["model"]  # no leftovers
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    clf = BertLSTMClassifier.from_pretrained(tmp_path / "model", device="cpu")
    report = clf.evaluate(pd.read_csv(files["dev"]))
    assert report["accuracy"] == metrics["dev_accuracy"] and report["n"] == metrics["n_dev"] == 50

    # the cache the two processes built holds the features one process builds
    single = {**ENV, "BERTLSTM_CACHE": str(tmp_path / "own-cache")}
    one = subprocess.run([sys.executable, *args[:-1], str(tmp_path / "single"), "-q"], env=single, timeout=600)
    assert one.returncode == 0
    for meta in (tmp_path / "shared-cache").glob("*/meta.json"):
        twin = tmp_path / "own-cache" / meta.parent.name
        assert json.loads(meta.read_text())["processes"] == 2 and (twin / "meta.json").is_file()
        shared, own = (np.fromfile(f / "features.bin", dtype=np.float16) for f in (meta.parent, twin))
        np.testing.assert_array_equal(shared, own)


def test_a_two_process_tagger_run_scores_the_whole_dev_set(tiny_encoder: str, tmp_path: Path) -> None:
    from bertlstm.tasks.tag.estimator import BertLSTMTagger
    from conftest import make_tagged, write_conll

    train = write_conll(tmp_path / "train.conll", *make_tagged(200, 0))
    dev = write_conll(tmp_path / "dev.conll", *make_tagged(45, 1))  # odd: the shares differ in size
    args = ["-m", "bertlstm", "train", "--task", "tag", "--crf", "--train", str(train), "--dev", str(dev)]
    args += ["--encoder", tiny_encoder, "--epochs", "2", "--device", "cpu", "--output", str(tmp_path / "model")]
    env = {**ENV, "BERTLSTM_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([*TORCHRUN, *args], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    tagger = BertLSTMTagger.from_pretrained(tmp_path / "model", device="cpu")
    report = tagger.evaluate(read_tagged(dev))
    assert report["micro_f1"] == metrics["dev_micro_f1"] and report["n"] == metrics["n_dev"] == 45


def test_prediction_shared_by_two_processes_is_the_same_file(tiny_encoder: str, files, tmp_path: Path) -> None:
    texts, labels = make_sentiment(300, seed=1)
    clf = BertLSTMClassifier(encoder=tiny_encoder, lstm_units=8, epochs=1, progress=False, device="cpu")
    model = clf.fit(texts, labels).save_pretrained(tmp_path / "model")
    pd.DataFrame({"id": range(2300), "text": make_sentiment(2300, seed=9)[0]}).to_csv(tmp_path / "in.csv", index=False)
    command = ["-m", "bertlstm", "predict", "--model", str(model), "--input", str(tmp_path / "in.csv"), "-q"]
    command += ["--backend", "torch"]  # one process alone would run on onnxruntime (within 1e-4, not to the byte)
    subprocess.run([*TORCHRUN, *command, "--output", str(tmp_path / "two.jsonl")], env=ENV, check=True, timeout=600)
    subprocess.run(
        [sys.executable, *command, "--output", str(tmp_path / "one.jsonl")], env=ENV, check=True, timeout=600
    )
    assert (tmp_path / "two.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()


@pytest.mark.slow
def test_a_killed_two_process_run_resumes_to_the_same_result(tiny_encoder: str, files, tmp_path: Path) -> None:
    def train(output: Path) -> list[str]:
        args = ["-m", "bertlstm", "train", "--train", str(files["train"]), "--dev", str(files["dev"]), "--mode"]
        args += ["finetune", "--encoder", tiny_encoder, "--epochs", "3", "--lr", "0.01", "--encoder-lr", "0.001"]
        return [*TORCHRUN, *args, "--device", "cpu", "--no-cache", "--checkpoint-minutes", "0", "--output", str(output)]

    env = {**ENV, "BERTLSTM_CACHE": str(tmp_path / "cache")}
    subprocess.run(train(tmp_path / "whole"), env=env, check=True, capture_output=True, timeout=600)
    killed = subprocess.Popen(train(tmp_path / "cut"), env=env, stderr=subprocess.PIPE, text=True)
    for line in killed.stderr:  # type: ignore[union-attr]
        if line.startswith("checkpoint saved: epoch 1"):
            launcher = psutil.Process(killed.pid)
            workers = launcher.children(recursive=True)
            for process in [*workers, launcher]:  # the workers, then torchrun: as a machine that goes down
                process.send_signal(signal.SIGKILL)
            psutil.wait_procs(workers, timeout=30)
            break
    killed.wait(timeout=60)
    assert killed.returncode == -signal.SIGKILL and not (tmp_path / "cut").exists()
    resume = [*TORCHRUN, "-m", "bertlstm", "train", "--resume", str(tmp_path / "cut")]
    resumed = subprocess.run(resume, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr and "epoch 1/3" not in resumed.stderr
    columns = ["epoch", "train_loss", "dev_accuracy", "dev_macro_f1"]
    whole = pd.read_csv(tmp_path / "whole" / "history.csv")[columns]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "cut" / "history.csv")[columns], whole)


def test_accelerate_launch_runs_the_same_two_processes(tiny_encoder: str, files, tmp_path: Path) -> None:
    """`accelerate launch --multi_gpu` starts torchrun's processes (on CPUs too, with the cpu device)."""
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    accelerate += [
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "0",
    ]
    args = ["-m", "bertlstm", "train", "--train", str(files["train"]), "--encoder", tiny_encoder, "--epochs", "1"]
    env = {**ENV, "BERTLSTM_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(
        [*accelerate, *args, "--device", "cpu", "--output", str(tmp_path / "m")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "x 2 process(es)" in result.stderr and (tmp_path / "m" / "model.safetensors").is_file()
    assert not [line for line in result.stderr.splitlines() if "warn" in line.lower()], result.stderr  # quiet
    assert result.stdout.count("next steps:") == 1  # said by the main process only
