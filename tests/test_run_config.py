"""Settings: one typed source for the library, the command line and config files; checked once, up front."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from bertlstm import BertLSTMClassifier, BertLSTMError, ClassifyData, ModelConfig, RunConfig, TrainConfig
from bertlstm.cli import build_parser, main
from bertlstm.run_config import SECTIONS
from bertlstm.tasks.registry import TASKS


def test_from_dict_reads_strings_and_files_values_as_typed_settings() -> None:
    config = TrainConfig.from_dict(
        {"epochs": "3", "lr": "0.01", "class_weight": "1,5", "threshold": "0.3", "cache": "false", "seed": 7}
    )
    assert config.epochs == 3 and config.lr == 0.01 and config.class_weight == (1.0, 5.0)
    assert config.threshold == 0.3 and config.cache is False and config.seed == 7
    assert TrainConfig.from_dict({"class_weight": "balanced", "threshold": "global"}).threshold == "global"
    assert ModelConfig.from_dict({"bidirectional": True, "mode": "pooled"}).mode == "pooled"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"epochs": "three"}, "`epochs` must be a whole number, not 'three'"),
        ({"epochs": 0}, "`epochs` must be a whole number of at least 1"),
        ({"lr": "fast"}, "`lr` must be a number"),
        ({"metric": "f2"}, "`metric` must be one of auto, accuracy, macro_f1, micro_f1, not 'f2'"),
        ({"threshold": 1.5}, "`threshold` must be a finite number above 0 and at most 0.999"),
        ({"epoch": 3}, "unknown setting(s) epoch"),
    ],
)
def test_bad_values_are_one_clear_error(values, message) -> None:
    with pytest.raises(BertLSTMError) as error:
        TrainConfig.from_dict(values)
    assert message in str(error.value)


def test_settings_cannot_change_after_they_are_checked() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ModelConfig().lstm_units = 0  # type: ignore[misc]


def test_settings_that_clash_are_refused_together() -> None:
    with pytest.raises(BertLSTMError, match="micro_f1 is for multi-label"):
        RunConfig(training=TrainConfig(metric="micro_f1"))
    assert RunConfig(model=ModelConfig(multi_label=True), training=TrainConfig(metric="micro_f1"))


def test_every_setting_is_a_command_line_option_of_its_tasks_train() -> None:
    for task in TASKS.values():
        train = build_parser(task)._subparsers._group_actions[0].choices["train"]  # type: ignore[union-attr]
        flags = {flag for action in train._actions for flag in action.option_strings}
        for section, cls in RunConfig.sections_of(task).items():
            for field in dataclasses.fields(cls):
                if not (section == "run" and field.name in SECTIONS):
                    assert "--" + field.name.replace("_", "-") in flags, field.name
        assert {"--encoder-weight-decay", "--cache-dtype", "--no-cache", "--no-progress", "--config"} <= flags


def test_train_help_shows_the_tasks_own_choices(capsys) -> None:
    """A tagger's help offers no pooled mode and no multi-label; a classifier's no CRF."""
    for argv, present, absent in (
        (["train", "--help"], ["--multi-label", "pooled"], ["--crf", "--word-pooling"]),
        (
            ["train", "--task", "tag", "--help"],
            ["--crf", "--word-pooling", "--tag-column"],
            ["pooled", "--multi-label"],
        ),
    ):
        with pytest.raises(SystemExit):
            main(argv)
        text = capsys.readouterr().out
        assert all(word in text for word in present) and not any(word in text for word in absent), argv


def test_config_file_with_command_line_overrides_and_dump(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run.yaml"
    run.write_text(
        textwrap.dedent(
            """\
            output: runs/x
            data: {train: train.csv, text_column: body}
            model: {mode: finetune, lstm_units: 32}
            training: {epochs: 3, encoder_lr: 5.0e-5, class_weight: balanced}
            """
        )
    )
    assert main(["train", "--config", str(run), "--epochs", "4", "--no-cache", "--dump-config"]) == 0
    dumped = yaml.safe_load(capsys.readouterr().out)
    assert dumped["output"] == "runs/x" and dumped["data"]["text_column"] == "body"
    assert dumped["model"]["mode"] == "finetune" and dumped["model"]["lstm_units"] == 32
    assert dumped["training"]["epochs"] == 4 and dumped["training"]["encoder_lr"] == 5e-5  # the option wins
    assert dumped["training"]["cache"] is False and dumped["training"]["class_weight"] == "balanced"
    assert dumped["training"]["encoder_weight_decay"] == 0.001  # every setting, defaults included
    assert RunConfig.from_dict(dumped) == RunConfig.from_dict(dumped)  # the dump reads back as a config
    (tmp_path / "run.json").write_text(json.dumps(dumped))
    assert main(["train", "--config", str(tmp_path / "run.json"), "--dump-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == dumped


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("model: {lstm_unit: 3}\n", "model: unknown setting(s) lstm_unit"),
        ("model: frozen\n", "the 'model' section must be a mapping"),
        ("output: [1, 2\n", "cannot be read"),
        ("- a\n- b\n", "must hold a mapping of settings"),
    ],
)
def test_bad_config_files_are_one_error_line(tmp_path: Path, capsys, content: str, message: str) -> None:
    (tmp_path / "run.yaml").write_text(content)
    assert main(["train", "--config", str(tmp_path / "run.yaml"), "--dump-config"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1


def test_a_run_needs_data_and_output(capsys) -> None:
    assert main(["train", "--epochs", "2"]) == 2
    assert "needs --train data and an --output folder" in capsys.readouterr().err


def test_data_config_defaults() -> None:
    assert ClassifyData().label_separator == "," and ClassifyData().train is None


def test_importing_bertlstm_changes_no_global_state() -> None:
    """Everything a library could touch: logging, warnings, matplotlib's backend, torch's settings."""
    probe = textwrap.dedent(
        """
        import json, logging, warnings
        # what bertlstm imports, imported first: only what bertlstm itself does is compared
        import accelerate, matplotlib, pandas, scipy.special, sklearn.metrics, sympy, torch, transformers
        from transformers.utils import logging as hf_logging

        def state():
            return {
                "root": [type(h).__name__ for h in logging.getLogger().handlers],
                "levels": {n: logging.getLogger(n).level for n in ("", "transformers", "bertlstm")},
                "hf": [hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()],
                "warnings": len(warnings.filters),
                "formatwarning": warnings.formatwarning.__module__,
                "backend": matplotlib.get_backend(),
                "torch": [torch.get_num_threads(), torch.get_default_dtype().__repr__()],
            }

        before = state()
        import bertlstm
        from bertlstm import BertLSTMClassifier, RunConfig  # the heavy modules too
        import bertlstm.reports, bertlstm.runs, bertlstm.core.training, bertlstm.core.feature_cache
        import bertlstm.deploy.files, bertlstm.deploy.export, bertlstm.cli
        print(json.dumps([before, state()]))
        """
    )
    env = {**os.environ, "MPLBACKEND": "svg"}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    before, after = json.loads(result.stdout.strip().splitlines()[-1])
    assert after == before and before["backend"] == "svg"


def test_the_strong_preset_fills_in_model_settings_that_given_ones_override() -> None:
    strong = RunConfig.from_dict({"preset": "strong"}).model
    assert (strong.layers, strong.lstm_layers, strong.bidirectional) == ("concat-last-4", 2, True)
    mine = RunConfig.from_dict({"preset": "strong", "model": {"lstm_layers": 1}}).model
    assert (mine.layers, mine.lstm_layers) == ("concat-last-4", 1)
    assert RunConfig.from_dict({}).model.layers == "last"  # no preset: the original recipe
    tagger = RunConfig.from_dict({"preset": "strong", "task": "tag"}).model
    assert tagger.layers == "concat-last-4"
    with pytest.raises(BertLSTMError, match="`preset` must be one of strong, not 'best'"):
        RunConfig.from_dict({"preset": "best"})
    resolved = RunConfig.from_dict({"preset": "strong", "model": {"lstm_units": 32}})
    assert RunConfig.from_dict(resolved.to_dict()) == resolved  # run.json reads back to the same run


def test_encoder_lr_auto_follows_the_encoders_width(tiny_encoder: str, toy_data, tmp_path: Path, caplog) -> None:
    """`encoder_lr` auto: 2e-5 from BERT-base's width, the narrow-encoder rate below it; a number wins; the
    model records the number it used, and the log says it."""
    from bertlstm.core.config import NARROW_ENCODER_LR, encoder_lr_for

    assert TrainConfig().encoder_lr == "auto"
    assert encoder_lr_for("auto", 768) == encoder_lr_for("auto", 1024) == 2e-5
    assert encoder_lr_for("auto", 384) == NARROW_ENCODER_LR and encoder_lr_for(3e-5, 384) == 3e-5
    with caplog.at_level(logging.INFO, logger="bertlstm"):
        clf = BertLSTMClassifier(encoder=tiny_encoder, mode="finetune", epochs=1, progress=False).fit(*toy_data)
    assert clf.training_.encoder_lr == NARROW_ENCODER_LR  # the tiny encoder is 32 wide
    assert f"encoder lr {NARROW_ENCODER_LR:g} (auto, for a 2-layer, 32-wide encoder)" in caplog.text
    saved = json.loads((clf.save_pretrained(tmp_path / "m") / "config.json").read_text())
    assert saved["training"]["encoder_lr"] == NARROW_ENCODER_LR
    given = BertLSTMClassifier(encoder=tiny_encoder, mode="finetune", epochs=1, encoder_lr=1e-4, progress=False)
    assert given.fit(*toy_data).training_.encoder_lr == 1e-4
