"""The server under load from a separate load-generator process on loopback (issue: putting a model to work).

    python bench/serve_load.py --model bench/results/sst2-frozen              # concurrency 1, 8 and 32
    python bench/serve_load.py --model bench/results/sst2-frozen-int8.onnx    # the ONNX back end

Starts `bertlstm serve` in one process, then for each concurrency runs this script's `load` mode in another
process: that many connections (HTTP/1.1 keep-alive), each sending one SST-2 dev sentence per request, one
request after another, for at most `--seconds` and `--requests`. Prints requests/s, p50 and p99 latency and
failures per concurrency, and the throughput ratio of the highest concurrency to concurrency 1. The server and
the load generator share this machine's two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"


async def one_connection(port: int, texts: list[str], stop_at: float, budget: list[int], out: list) -> None:
    """Requests one after another on one connection until time or the shared budget runs out."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = 0
    while time.perf_counter() < stop_at and budget[0] > 0:
        budget[0] -= 1
        body = json.dumps({"texts": [texts[i % len(texts)]]}).encode()
        i += 1
        head = f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
        start = time.perf_counter()
        writer.write(head.encode() + b"\r\n\r\n" + body)
        await writer.drain()
        status = int((await reader.readline()).split()[1])
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        out.append((time.perf_counter() - start, status))
    writer.close()


async def load(port: int, concurrency: int, requests: int, seconds: float, texts: list[str]) -> dict:
    results: list[tuple[float, int]] = []
    budget = [requests]
    start = time.perf_counter()
    stop_at = start + seconds
    await asyncio.gather(*(one_connection(port, texts, stop_at, budget, results) for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    latencies = sorted(latency for latency, status in results if status == 200)
    failures = sum(status != 200 for _, status in results)

    def percentile(q: float) -> float:
        return 1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")

    return {
        "concurrency": concurrency,
        "requests": len(results),
        "seconds": elapsed,
        "requests_per_s": len(results) / elapsed,
        "p50_ms": percentile(0.50),
        "p99_ms": percentile(0.99),
        "failures": failures,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(port: int, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the server exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", default="run", choices=("run", "load"))
    parser.add_argument("--model", help="model folder or .onnx file to serve")
    parser.add_argument("--port", type=int)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=3000, help="at most this many requests per concurrency")
    parser.add_argument("--seconds", type=float, default=20, help="at most this long per concurrency")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--serve-option", action="append", default=[], help="passed to bertlstm serve")
    args = parser.parse_args()
    texts = [line.split("\t")[0] for line in (args.data / "dev.tsv").read_text().splitlines()[1:]]
    if args.mode == "load":  # the load-generator process
        print(json.dumps(asyncio.run(load(args.port, args.concurrency[0], args.requests, args.seconds, texts))))
        return
    port = free_port()
    command = [sys.executable, "-m", "bertlstm.cli", "serve", "--model", args.model, "--port", str(port), "-q"]
    server = subprocess.Popen(command + [o for opt in args.serve_option for o in opt.split()])
    try:
        wait_until_up(port, server)
        results = []
        for concurrency in args.concurrency:
            generator = [sys.executable, __file__, "load", "--port", str(port), "--concurrency", str(concurrency)]
            limits = ["--requests", str(args.requests), "--seconds", str(args.seconds), "--data", str(args.data)]
            out = subprocess.run(generator + limits, capture_output=True, text=True, check=True).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
            r = results[-1]
            print(
                f"concurrency {concurrency:>3}: {r['requests']:>5} requests in {r['seconds']:.1f}s = "
                f"{r['requests_per_s']:6.1f} req/s, p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms, "
                f"failures {r['failures']}",
                flush=True,
            )
        ratio = results[-1]["requests_per_s"] / results[0]["requests_per_s"]
        print(f"throughput at concurrency {results[-1]['concurrency']} / at {results[0]['concurrency']}: {ratio:.2f}x")
        print(json.dumps({"model": args.model, "results": results}))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
