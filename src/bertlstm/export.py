"""A trained model as one ONNX graph (encoder + LSTM + head), optionally int8, with what a consumer needs.

``pack_padded_sequence`` does not export, so the graph reads padded batches with a masked formulation that is
exact: a forward LSTM is causal, so its output at each row's last real token has never seen padding; the
backward direction reads each row reversed *within its true length*, so it too starts at the row's last
real token. :class:`MaskedLSTM` does this with the trained weights, and :func:`export_onnx` checks the result
against the PyTorch model (within 1e-5) and the ONNX graph against PyTorch (within 1e-4) before it writes.

Beside ``NAME.onnx`` go ``NAME.tokenizer.json`` (the model's tokenizer, truncating at ``max_length``) and
``NAME.json`` (labels, thresholds, inputs, outputs, max length): onnxruntime and ``tokenizers`` alone can
serve it (:class:`bertlstm.predict.OnnxPredictor` does exactly that).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .errors import BertLSTMError, missing_package
from .model_folder import file_sha256
from .modeling import BertLSTMModel

logger = logging.getLogger(__name__)
EXPORT_FORMAT = 1
OPSET = 18
SAMPLE = [  # texts of different lengths: the check runs them padded in one batch
    "good",
    "the plot was dull and far too long, but the actors were wonderful",
    "not bad at all",
    "an utterly forgettable film that nobody will remember next year, which is a shame given its cast",
]


def reverse_within_length(lengths: Tensor, steps: int) -> Tensor:
    """Indices (B, T) that reverse each row's first ``lengths[b]`` steps and leave its padding in place."""
    t = torch.arange(steps, device=lengths.device).unsqueeze(0)  # (1, T)
    reversed_t = lengths.unsqueeze(1) - 1 - t  # (B, T)
    return torch.where(reversed_t >= 0, reversed_t, t)


def gather_steps(x: Tensor, index: Tensor) -> Tensor:
    """``x[b, index[b, t]]`` for every row and step: (B, T, D), (B, T) -> (B, T, D)."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.size(-1)))


class MaskedLSTM(nn.Module):
    """A (stacked, bi-)directional ``nn.LSTM`` over padded batches, without packing.

    Built from a trained LSTM: each layer and direction becomes a one-layer LSTM with the same weights.
    :meth:`forward` returns the final states, (B, U) or, bidirectional, (B, 2U): the forward state at each
    row's last real token and the backward state after reading the row back to its first token, as ``h_n``
    of the packed LSTM. :meth:`outputs` returns every step's output, as the packed LSTM's (padded) output.
    """

    def __init__(self, lstm: nn.LSTM) -> None:
        super().__init__()
        self.directions = 2 if lstm.bidirectional else 1
        self.cells = nn.ModuleList()  # layer by layer: forward, then backward
        for layer in range(lstm.num_layers):
            for suffix in ("", "_reverse")[: self.directions]:
                size = lstm.input_size if layer == 0 else lstm.hidden_size * self.directions
                cell = nn.LSTM(size, lstm.hidden_size, batch_first=True)
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(cell, f"{name}_l0").data.copy_(getattr(lstm, f"{name}_l{layer}{suffix}").data)
                self.cells.append(cell)

    def outputs(self, x: Tensor, lengths: Tensor) -> Tensor:
        """Every step's output: (B, T, D), (B,) -> (B, T, U) or (B, T, 2U); what padding steps hold is
        unspecified, the real steps are exact."""
        reverse = reverse_within_length(lengths, x.size(1))  # (B, T)
        for layer in range(len(self.cells) // self.directions):
            forward_out, _ = self.cells[layer * self.directions](x)  # (B, T, U), causal: padding comes after
            if self.directions == 1:
                x = forward_out
                continue
            backward_reversed, _ = self.cells[layer * 2 + 1](gather_steps(x, reverse))  # (B, T, U)
            x = torch.cat([forward_out, gather_steps(backward_reversed, reverse)], dim=-1)  # (B, T, 2U)
        return x

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        out = self.outputs(x, lengths)  # (B, T, dirs * U)
        rows, last = torch.arange(x.size(0), device=x.device), lengths - 1  # (B,), (B,)
        if self.directions == 1:
            return out[rows, last]  # (B, U)
        units = out.size(-1) // 2
        # forward state at the last real token, backward state back at token 0: (B, 2U)
        return torch.cat([out[rows, last, :units], out[:, 0, units:]], dim=-1)


class ExportModule(nn.Module):
    """token ids (B, T) and mask (B, T), int64 -> logits (B, C): the model with a :class:`MaskedLSTM`."""

    def __init__(self, model: BertLSTMModel) -> None:
        super().__init__()
        self.model = model
        self.lstm = MaskedLSTM(model.lstm)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        features, lengths = self.model.lstm_inputs(input_ids, attention_mask)
        return self.model.head(self.lstm(features, lengths))  # dropout is off in eval


class TaggerExportModule(nn.Module):
    """A tagger's windows of token ids and mask (Nw, T), and per word (B, W) its window and piece span, with
    each sentence's word count (B,), int64 -> emission scores (B, W, C); its BiLSTM as a :class:`MaskedLSTM`.
    CRF decoding (Viterbi) runs after the graph, on the emissions (see :func:`bertlstm.tagger.viterbi`)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model
        self.lstm = MaskedLSTM(model.lstm) if model.lstm is not None else None

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        word_window: Tensor,
        word_start: Tensor,
        word_end: Tensor,
        word_counts: Tensor,
    ) -> Tensor:
        words = self.model.word_states(self.model.encode(input_ids, attention_mask), word_window, word_start, word_end)
        if self.lstm is not None:
            words = self.lstm.outputs(words, word_counts)  # (B, W, 2U)
        return self.model.head(words)  # (B, W, C)


TAGGER_INPUTS = ("input_ids", "attention_mask", "word_window", "word_start", "word_end", "word_counts")


def export_onnx(model_dir: str | Path, output: str | Path, quantize: str | None = None) -> Path:
    """Export the model folder ``model_dir`` to ``output`` (``.onnx``), with its tokenizer and metadata
    beside it; ``quantize="int8"`` writes onnxruntime's dynamically quantized graph instead. A tagger's
    graph gives emission scores; its metadata holds the CRF's scores for decoding after it."""
    from .classifier import BertLSTMClassifier
    from .model_folder import task_of

    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401  (the exporter needs it)
    except ImportError as err:
        raise missing_package(err, "export") from None
    path = _check_output(output, model_dir)
    if quantize not in (None, "int8"):
        raise BertLSTMError(f"`quantize` must be int8 or nothing, not {quantize!r}", "quantize")
    if task_of(model_dir) == "tagging":
        return _export_tagger(model_dir, path, quantize)
    clf = BertLSTMClassifier.from_pretrained(model_dir, device="cpu")
    module = ExportModule(clf._require_model()).eval()
    inputs, other = _sample(clf, SAMPLE), _sample(clf, SAMPLE[:3])  # `other`: another batch size and length
    _check_close(module(*inputs), clf._require_model()(*inputs).logits, 1e-5, "the masked LSTM")
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.tmp-") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        _torch_export(module, inputs, fp32)
        for sample in (inputs, other):
            _check_close(_onnx_logits(fp32, sample), module(*sample), 1e-4, "onnxruntime")
        graph = fp32
        if quantize == "int8":
            graph = Path(tmp) / "int8.onnx"
            _quantize(fp32, graph)
            drift = float(np.abs(_onnx_logits(graph, inputs) - module(*inputs).detach().numpy()).max())
            logger.info(f"int8 graph: largest logit change on the check sample {drift:.4f}")
        _write_beside(clf, graph, Path(tmp), path, quantize)
    logger.info(f"exported {model_dir} to {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return path


def _export_tagger(model_dir: str | Path, path: Path, quantize: str | None) -> Path:
    from .tag_data import split_words
    from .tagger import BertLSTMTagger

    tagger = BertLSTMTagger.from_pretrained(model_dir, device="cpu")
    module = TaggerExportModule(tagger.model_).eval()

    def sample(texts: list[str]) -> tuple[Tensor, ...]:
        dataset = tagger._dataset([split_words(text) for text in texts], "the check sample")
        batch = dataset.collate([dataset[i] for i in range(len(dataset))])
        return tuple(batch[name] for name in TAGGER_INPUTS)

    inputs, other = sample(SAMPLE), sample(SAMPLE[:3])
    counts = inputs[-1]
    real = torch.arange(inputs[2].size(1)) < counts.unsqueeze(1)  # (B, W): the words, not their padding
    want = tagger.model_(*inputs[2:5], counts, input_ids=inputs[0], attention_mask=inputs[1]).logits
    _check_close(module(*inputs)[real], want[real], 1e-5, "the masked LSTM")
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.tmp-") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        _torch_export(module, inputs, fp32, TAGGER_INPUTS, "emissions")
        for batch in (inputs, other):
            words = torch.arange(batch[2].size(1)) < batch[-1].unsqueeze(1)  # (B, W)
            got = _onnx_run(fp32, batch, TAGGER_INPUTS, "emissions")
            _check_close(got[words.numpy()], module(*batch)[words], 1e-4, "onnxruntime")
        graph = fp32
        if quantize == "int8":
            graph = Path(tmp) / "int8.onnx"
            _quantize(fp32, graph)
        _write_beside(tagger, graph, Path(tmp), path, quantize, _tagger_metadata(tagger))
    logger.info(f"exported {model_dir} to {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return path


def _tagger_metadata(tagger: Any) -> dict[str, Any]:
    """What decoding needs beside the graph: tags, special token ids, and the CRF's scores with the moves
    the tag scheme forbids already at -10000 (plain Viterbi over them gives valid entities only)."""
    model, tokenizer = tagger.model_, tagger.tokenizer_
    crf = None
    if model.crf is not None:
        start, transitions, end = (t.detach().tolist() for t in model.crf._scores(constrained=True))
        crf = {"start": start, "transitions": transitions, "end": end}
    return {
        "task": "tagging",
        "inputs": {
            **dict.fromkeys(TAGGER_INPUTS[:2], "int64 (windows, pieces)"),
            **dict.fromkeys(TAGGER_INPUTS[2:5], "int64 (sentences, words)"),
            "word_counts": "int64 (sentences,)",
        },
        "outputs": {"emissions": "float32 (sentences, words, tags)"},
        "labels": {"names": tagger.tags_, "scheme": "iob2"},
        "crf": crf,
        "word_pooling": model.config.word_pooling,
        "context": model.config.context,
        "special_token_ids": {
            "cls": tokenizer.cls_token_id,
            "sep": tokenizer.sep_token_id,
            "unk": tokenizer.unk_token_id,
        },
    }


def _check_output(output: str | Path, model_dir: str | Path) -> Path:
    path = Path(output).expanduser().resolve()
    if path.suffix != ".onnx":
        raise BertLSTMError(f"export output {output}: name a .onnx file", "output")
    if path.is_dir() or Path(model_dir).resolve() in path.parents:
        raise BertLSTMError(f"export output {output}: name a file outside the model folder", "output")
    if not path.parent.is_dir():
        raise BertLSTMError(f"export output {output}: folder {path.parent} does not exist", "output")
    return path


def _sample(clf: Any, texts: list[str]) -> tuple[Tensor, Tensor]:
    from .data import pad_batch, tokenize

    ids = tokenize(clf.tokenizer_, texts, clf.model_.config.max_length)
    return pad_batch(ids, clf.tokenizer_.pad_token_id or 0)


def _check_close(got: Any, want: Tensor, tolerance: float, what: str) -> None:
    got = got.detach().numpy() if isinstance(got, Tensor) else got
    gap = float(np.abs(got - want.detach().numpy()).max())
    if not gap <= tolerance:
        raise BertLSTMError(f"export check failed: {what} gives logits {gap:.2e} away from PyTorch's (> {tolerance})")


def _torch_export(
    module: nn.Module,
    inputs: tuple[Tensor, ...],
    path: Path,
    names: tuple[str, ...] = ("input_ids", "attention_mask"),
    output: str = "logits",
) -> None:
    """The dynamo exporter (the TorchScript one gives wrong attention for transformers 5 BERTs)."""
    batch, steps = torch.export.Dim("batch"), torch.export.Dim("sequence")
    dynamic: tuple[dict[int, Any], ...] = ({0: batch, 1: steps}, {0: batch, 1: steps})
    if len(names) > 2:  # a tagger: windows (batch, sequence), sentences (sentences, words)
        sentences, words = torch.export.Dim("sentences"), torch.export.Dim("words")
        dynamic += ({0: sentences, 1: words},) * 3 + ({0: sentences},)
    # torch.onnx swaps in a while-loop LSTM for dynamic lengths, but after a first export in this process the
    # operator's dispatch cache still holds the unrolled one, which fixes the sequence length: clear it.
    torch.ops.aten.lstm.input._dispatch_cache.clear()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals are not the user's business
        torch.onnx.export(
            module,
            inputs,
            str(path),
            input_names=list(names),
            output_names=[output],
            dynamic_shapes=dynamic,
            opset_version=OPSET,
            dynamo=True,
            external_data=False,  # one self-contained file
            verbose=False,
        )


def _onnx_logits(path: Path, inputs: tuple[Tensor, Tensor]) -> np.ndarray:
    return _onnx_run(path, inputs, ("input_ids", "attention_mask"), "logits")


def _onnx_run(path: Path, inputs: tuple[Tensor, ...], names: tuple[str, ...], output: str) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {name: tensor.numpy().astype(np.int64) for name, tensor in zip(names, inputs, strict=True)}
    return session.run([output], feeds)[0]


def _quantize(source: Path, target: Path) -> None:
    """onnxruntime's own tooling: its pre-processing (shape inference, graph optimization), then dynamic
    quantization: int8 weights, activations quantized on the fly."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = target.with_name("prepared.onnx")
    # Symbolic shape inference cannot follow the LSTM's dynamic time axis; ONNX's own shape inference can.
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    # One scale per weight column (a single one per tensor cost 1.7 SST-2 dev points); 7-bit weights leave
    # headroom on CPUs without VNNI, where 8-bit products can saturate.
    quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)


def _write_beside(
    clf: Any, graph: Path, tmp: Path, path: Path, quantize: str | None, tagging: dict[str, Any] | None = None
) -> None:
    """The graph, its tokenizer and its metadata, each renamed into place. ``tagging``: a tagger's own
    metadata (its tokenizer cuts words into pieces, so it never truncates)."""
    stem = path.with_suffix("")
    tokenizer = tmp / "tokenizer.json"
    backend = clf.tokenizer_.backend_tokenizer
    backend.no_padding()
    config = clf.model_.config
    if tagging is None:
        backend.enable_truncation(config.max_length)
    else:
        backend.no_truncation()
    backend.save(str(tokenizer))
    metadata = {
        "format": "bertlstm-onnx",
        "format_version": EXPORT_FORMAT,
        "bertlstm_version": version("bertlstm"),
        "inputs": {"input_ids": "int64 (batch, sequence)", "attention_mask": "int64 (batch, sequence)"},
        "outputs": {"logits": "float32 (batch, labels)"},
        "activation": "sigmoid" if getattr(config, "multi_label", False) else "softmax",
        "max_length": config.max_length,
        "pad_token_id": clf.tokenizer_.pad_token_id or 0,
        "mode": config.mode,
        "encoder": config.encoder,
        "quantized": quantize,
        "opset": OPSET,
        "tokenizer": f"{stem.name}.tokenizer.json",
        "sha256": file_sha256(graph),
        **({"labels": clf.labels_.to_dict()} if tagging is None else tagging),  # a tagger's own keys win
    }
    (tmp / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    umask = os.umask(0)
    os.umask(umask)
    for source, target in ((tokenizer, Path(f"{stem}.tokenizer.json")), (tmp / "metadata.json", Path(f"{stem}.json"))):
        source.chmod(0o666 & ~umask)
        shutil.move(str(source), target)
    graph.chmod(0o666 & ~umask)
    shutil.move(str(graph), path)  # last: a complete .onnx means its companions are there
