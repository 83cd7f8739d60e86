"""How close each engine's encoder pass comes to this machine's own limit, and how little goes to padding.

    python bench/encoder_speed.py                  # SST-2 train, default encoder, this machine's CPU threads
    python bench/encoder_speed.py --emulate-avx2   # the same with PyTorch held to AVX2 (see 4.)

1. Padding: the fraction of padded positions over all of SST-2 train (67,349 sentences) for the training
   batches (length-grouped, 32), the encoder-only batches (sorted by length, --encode-batch-size) and, for
   comparison, padding everything to 128.
2. The machine's limit: plain matrix products timed in this run, the better of a run before and one after the
   engines: fp32 square (--matmul-n cubed) and at the encoder's own shape (a batch of 8,192 tokens times the
   feed-forward weight, 384 x 1536); int8 (``torch._int_mm``, int32 sums); bf16 where the CPU has native bf16
   (AVX512-BF16 or AMX, read from /proc/cpuinfo).
3. Engines: the frozen encoder pass over --n texts (inference mode, sorted batches) on PyTorch fp32, on
   onnxruntime fp32 (the encoder alone exported with the project's exporter, checked within 1e-4), and with
   native bf16 PyTorch under autocast (opt-in in the product: not exact). Counted as 2 x non-embedding
   parameters per token plus attention (4 x T^2 x H per layer and sequence): "useful" counts real tokens
   only, "executed" the padded positions too; each as a share of the matching matrix-product peak.
4. ``--emulate-avx2`` runs 2. and 3. in a child process with ``ATEN_CPU_CAPABILITY=avx2``,
   ``ONEDNN_MAX_CPU_ISA=AVX2`` and ``MKL_ENABLE_INSTRUCTIONS=AVX2``: PyTorch's kernels as on an AVX2-only CPU.
   onnxruntime has no such switch, so its row there is this CPU's, not an AVX2 one's.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bertlstm.core.batching import LengthGroupedBatches, pad_batch, sorted_batches
from bertlstm.core.data import load_texts
from bertlstm.core.encoders import load_encoder
from bertlstm.tasks.classify.data import tokenize

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"


def padded_fraction(lengths: list[int], batches: list[list[int]], fixed: int | None = None) -> float:
    real = sum(lengths[i] for b in batches for i in b)
    total = sum(len(b) * (fixed or max(lengths[i] for i in b)) for b in batches)
    return 1 - real / total


def encoder_flops(config, lengths: list[int], padded_to: list[int]) -> tuple[float, float]:
    """(useful, executed) FLOPs of one forward pass: per layer 2*T*(4H^2 + 2HI) + 4*T^2*H."""
    h, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    per_layer = lambda t: 2 * t * (4 * h * h + 2 * h * i) + 4 * t * t * h  # noqa: E731
    useful = layers * sum(per_layer(t) for t in lengths)
    executed = layers * sum(per_layer(t) for t in padded_to)
    return useful, executed


def rate(multiply, flops: float, repeats: int = 10) -> float:
    for _ in range(2):
        multiply()
    start = time.perf_counter()
    for _ in range(repeats):
        multiply()
    return flops * repeats / (time.perf_counter() - start)


def cpu_flags() -> set[str]:
    try:
        return set(" ".join(line for line in Path("/proc/cpuinfo").read_text().splitlines() if "flags" in line).split())
    except OSError:
        return set()


def cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.machine()


def native_bf16() -> bool:
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"}) and torch.backends.cpu.get_cpu_capability() != "AVX2"


def peaks(n: int) -> dict[str, float]:
    """This machine's matrix-product rates (FLOP/s, int8: OP/s)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    x, w = torch.randn(8192, 384), torch.randn(384, 1536)
    found = {
        "fp32 square": rate(lambda: a @ b, 2 * n**3),
        "fp32 encoder shape": rate(lambda: x @ w, 2 * 8192 * 384 * 1536),
    }
    qa, qb = (torch.randint(-128, 127, (n, n), dtype=torch.int8) for _ in range(2))
    try:
        found["int8"] = rate(lambda: torch._int_mm(qa, qb), 2 * n**3)
    except RuntimeError:
        pass
    if native_bf16():
        ha, hb = a.bfloat16(), b.bfloat16()
        found["bf16"] = rate(lambda: ha @ hb, 2 * n**3)
    return found


def onnx_encoder(encoder, ids: list[list[int]], folder: Path):
    """The encoder alone as an ONNX graph (the project's exporter), checked against PyTorch; its session."""
    import onnxruntime as ort

    from bertlstm.core.export_graph import ExportGraph
    from bertlstm.core.onnx_export import _torch_export

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask):
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    graph = ExportGraph(
        Encoder().eval(),
        ("input_ids", "attention_mask"),
        "hidden",
        ("batch", "sequence", "hidden"),
        {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}},
    )
    input_ids, mask = pad_batch(ids[:8], 0)
    path = folder / "encoder.onnx"
    _torch_export(graph, {"input_ids": input_ids, "attention_mask": mask}, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    check_ids, check_mask = pad_batch(ids[100:131], 0)
    with torch.inference_mode():
        want = graph.module(torch.from_numpy(check_ids), torch.from_numpy(check_mask)).numpy()
    got = session.run(["hidden"], {"input_ids": check_ids, "attention_mask": check_mask})[0]
    gap = float(np.abs(got - want)[check_mask.astype(bool)].max())
    assert gap <= 1e-4, f"the encoder's graph is {gap:.1e} away from PyTorch"
    return session, gap


def engines(args: argparse.Namespace, encoder, ids: list[list[int]]) -> None:
    """2. and 3.: the peaks, then each engine's pass, in this process."""
    kernels = torch.backends.cpu.get_cpu_capability()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, kernels {kernels}")
    batches = sorted_batches([len(x) for x in ids], args.encode_batch_size)
    padded = [pad_batch([ids[i] for i in rows], 0) for rows in batches]
    padded_to = [input_ids.shape[1] for input_ids, _ in padded for _ in range(input_ids.shape[0])]
    useful, executed = encoder_flops(encoder.config, [len(x) for x in ids], padded_to)
    before = peaks(args.matmul_n)

    def torch_pass(dtype: torch.dtype | None = None) -> float:
        with torch.inference_mode(), torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            encoder(*map(torch.from_numpy, padded[0]))  # warm-up
            start = time.perf_counter()
            for input_ids, mask in padded:
                encoder(input_ids=torch.from_numpy(input_ids), attention_mask=torch.from_numpy(mask))
            return time.perf_counter() - start

    times = {"torch fp32": torch_pass()}
    if "onnx" in args.engines:
        with tempfile.TemporaryDirectory() as tmp:
            session, gap = onnx_encoder(encoder, ids, Path(tmp))
            print(f"onnxruntime encoder graph: within {gap:.1e} of PyTorch")
            session.run(["hidden"], {"input_ids": padded[0][0], "attention_mask": padded[0][1]})
            start = time.perf_counter()
            for input_ids, mask in padded:
                session.run(["hidden"], {"input_ids": input_ids, "attention_mask": mask})
            times["onnxruntime fp32"] = time.perf_counter() - start
    if "bf16" in args.engines and native_bf16():
        times["torch bf16 (autocast)"] = torch_pass(torch.bfloat16)
    after = peaks(args.matmul_n)
    peak = {name: max(before[name], after[name]) for name in before}
    for name, value in peak.items():
        print(f"peak {name:20} {value / 1e9:7.1f} G{'OP' if name == 'int8' else 'FLOP'}/s")
    fp32 = max(peak["fp32 square"], peak["fp32 encoder shape"])
    for engine, seconds in times.items():
        limit = peak["bf16"] if "bf16" in engine else fp32
        print(
            f"{engine:22} {len(ids) / seconds:6.0f} texts/s, {sum(len(x) for x in ids) / seconds:7.0f} tokens/s, "
            f"{seconds:6.2f} s; useful {useful / seconds / 1e9:6.1f} GFLOP/s = {useful / seconds / limit:.0%} of "
            f"peak, executed {executed / seconds / 1e9:6.1f} = {executed / seconds / limit:.0%}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--n", type=int, default=8000, help="texts in the timed encoder pass")
    parser.add_argument("--encode-batch-size", type=int, default=256)
    parser.add_argument("--matmul-n", type=int, default=2048)
    parser.add_argument("--engines", default="torch,onnx,bf16")
    parser.add_argument("--emulate-avx2", action="store_true", help="PyTorch held to AVX2, in a child process")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not (args.data / "train.tsv").is_file():
        sys.exit(f"skipped: SST-2 is not at {args.data} (see ../shared/data/README)")
    if args.emulate_avx2:
        env = {
            **os.environ,
            "ATEN_CPU_CAPABILITY": "avx2",
            "ONEDNN_MAX_CPU_ISA": "AVX2",
            "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        }
        argv = [a for a in sys.argv[1:] if a != "--emulate-avx2"]
        sys.exit(subprocess.run([sys.executable, __file__, *argv, "--child"], env=env).returncode)
    torch.manual_seed(0)
    print(f"CPU: {cpu_name()}; AVX512: {'avx512f' in cpu_flags()}, native bf16: {native_bf16()}")

    encoder, tokenizer = load_encoder("minilm")
    texts = load_texts(args.data / "train.tsv")
    subset = random.Random(0).sample(range(len(texts)), args.n)
    ids = tokenize(tokenizer, [texts[i] for i in subset], 128)
    if not args.child:
        lengths = [len(x) for x in tokenize(tokenizer, texts, 128)]
        sampler = LengthGroupedBatches(lengths, 32, seed=0)
        print(
            f"SST-2 train: {len(texts)} texts, mean {sum(lengths) / len(lengths):.1f} word pieces, max {max(lengths)}"
        )
        print(f"padded positions, training batches (length-grouped, 32): {padded_fraction(lengths, list(sampler)):.1%}")
        sorted_b = sorted_batches(lengths, args.encode_batch_size)
        print(
            f"padded positions, encoder batches (sorted, {args.encode_batch_size}): "
            f"{padded_fraction(lengths, sorted_b):.1%}"
        )
        print(f"padded positions, everything padded to 128: {padded_fraction(lengths, sorted_b, fixed=128):.1%}")
    engines(args, encoder.eval(), ids)


if __name__ == "__main__":
    main()
