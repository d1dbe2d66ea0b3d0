"""Benchmark of the query-aware token compressor (``ragzip.compressors.token``).

Three parts, each writing JSON and Markdown under ``benchmarks/results/``:

* ``speed`` — throughput and peak memory on CPU over NQ ``val`` contexts (each question's gold
  passage and four other val passages). Every mode runs in its own process so that its peak
  resident memory is its own:

  - ``forward-fp32``: the encoder's forward pass alone over the same windows, inputs prepared
    beforehand (length-sorted batches) — the ceiling for the compressor;
  - ``e2e-fp32``: ``compress()`` end to end at 4x (tokenisation, windows, forward, word
    aggregation, forced words, exact budget selection in SmolLM2's tokenizer);
  - ``e2e-fp32-nobucket``: the same without length bucketing (windows in input order);
  - ``forward-int8`` / ``e2e-int8``: with dynamic int8 quantisation of the linear layers.

  Throughput is context tokens (SmolLM2's tokenizer, the unit of budgets) per second of wall
  time and per second of process CPU time; the CPU figure is what an unshared machine would
  see with the same thread count, the wall figure depends on what else runs on the cores
  (the load average before and after is recorded).
* ``quality`` — answer-in-context recall at 2x/4x/8x for ``token``, ``mig``, ``random`` and
  ``truncate``. Context: the question's gold passage plus the four passages BM25 (bm25s) ranks
  highest among the other NQ passages, in a seeded random order. Budgets are counted in
  SmolLM2's tokenizer. ``--split val`` for choices, ``--split test`` for the reported figure.
* ``kv`` — the key-value retrieval cases of ``kv_retrieval_dev.jsonl.gz`` (75 UUID records as
  passages, "What is the value of key K?"): the share whose exact value survives at 4x.

Run from the project root (the data folder is ``../shared/data``)::

    python benchmarks/token_speed.py speed --threads 2
    python benchmarks/token_speed.py quality --split test --questions 500
    python benchmarks/token_speed.py kv
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from results_io import machine, peak_rss_mb, write
from token_quality import kv, kv_markdown, quality, quality_markdown

from ragzip import Budget
from ragzip.compressors.token.compressor import TokenCompressor
from ragzip.compressors.token.model import cut_windows
from ragzip.experiments.datasets import nq_split
from ragzip.weights import smollm2_counter

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RATIOS = (2.0, 4.0, 8.0)
MODES = (
    "forward-fp32",
    "e2e-fp32",
    "e2e-fp32-nobucket",
    "forward-int8",
    "e2e-int8",
    "e2e-int8-nobucket",
)
ORT_MODES = ("forward-ort-fp32", "forward-ort-int8")
"""ONNX Runtime forward passes of the same model (export, then ORT's own dynamic int8
quantisation); run only when asked for with ``--modes`` and ``onnxruntime`` + ``onnx`` are
installed. Not a dependency of ragzip: they measure whether it would help."""


def speed_contexts(n: int, others: int = 4) -> list[tuple[str, list[str]]]:
    """``n`` val questions, each with its gold passage and ``others`` random val passages."""
    val = nq_split("val", DATA)
    rng = random.Random(0)
    out = []
    for ex in val[:n]:
        pool = [o.text for o in rng.sample(val, others + 1) if o.text != ex.text][:others]
        out.append((ex.question, [ex.text, *pool]))
    return out


def run_mode(mode: str, threads: int, questions: int, repeats: int) -> dict[str, Any]:
    """One benchmark mode in this process."""
    torch.set_num_threads(threads)
    counter = smollm2_counter()
    contexts = speed_contexts(questions)
    context_tokens = sum(sum(counter.count_batch(p)) for _, p in contexts)
    t0 = time.perf_counter()
    config = TokenCompressor.Config(
        quantize="int8" if "int8" in mode and "ort" not in mode else "none",
        length_bucketing=not mode.endswith("nobucket"),
    )
    compressor = TokenCompressor(config, counter=counter)
    load_s = time.perf_counter() - t0
    batches = prepare_batches(compressor, contexts)
    encoder_tokens = sum(int(m.sum()) for _, _, m in batches)
    flops = encoder_flops(compressor.model.config, batches)
    if mode in ORT_MODES:
        session = ort_session(compressor, batches[0], threads, int8=mode.endswith("int8"))
        feeds = [
            {"input_ids": i.numpy(), "attention_mask": m.numpy(), "token_type_ids": t.numpy()}
            for i, t, m in batches
        ]

        def once() -> None:
            for feed in feeds:
                session.run(None, feed)

    elif mode.startswith("forward"):

        def once() -> None:
            with torch.inference_mode():
                for ids, types, mask in batches:
                    compressor.model(input_ids=ids, attention_mask=mask, token_type_ids=types)

    else:

        def once() -> None:
            for question, passages in contexts:
                compressor.compress(question, passages, budget=Budget(ratio=4))

    once()  # warm-up
    walls, cpus = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        once()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    wall, cpu = float(np.median(walls)), float(np.median(cpus))
    return {
        "mode": mode,
        "threads": threads,
        "questions": len(contexts),
        "context_tokens": context_tokens,
        "encoder_tokens": encoder_tokens,
        "encoder_gflop": round(flops / 1e9, 1),
        "gflop_per_s_wall": round(flops / 1e9 / wall, 1),
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "tokens_per_s_wall": round(context_tokens / wall),
        "tokens_per_s_cpu": round(context_tokens / cpu * threads),
        "ms_per_request_wall": round(1000 * wall / len(contexts), 1),
        "load_s": round(load_s, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "loadavg_end": os.getloadavg(),
    }


def encoder_flops(config: Any, batches: Sequence[tuple[torch.Tensor, ...]]) -> float:
    """Multiply-add FLOPs of the encoder over the real (unpadded) tokens of ``batches``.

    Per token and layer: the four attention projections and the two feed-forward matrices
    (``2 * (4 h^2 + 2 h i)``), plus ``4 n h`` for scores and weighted values over a window of
    ``n`` tokens; the 2-class head and embeddings are negligible.
    """
    h, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    per_token = 2 * (4 * h * h + 2 * h * i) * layers
    total = 0.0
    for _, _, mask in batches:
        for n in mask.sum(dim=1).tolist():
            total += n * per_token + 4 * n * n * h * layers
    return total


def ort_session(
    compressor: TokenCompressor,
    example: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    threads: int,
    *,
    int8: bool,
) -> Any:
    """An ONNX Runtime session of the compressor's encoder (exported to a temporary file)."""
    import tempfile
    import warnings

    import onnxruntime as ort

    folder = Path(tempfile.mkdtemp(prefix="ragzip-ort-"))
    path = folder / "token.onnx"
    ids, types, mask = example
    names = ["input_ids", "attention_mask", "token_type_ids"]
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            compressor.model,
            (ids, mask, types),
            str(path),
            input_names=names,
            output_names=["logits"],
            dynamic_axes={k: {0: "batch", 1: "length"} for k in [*names, "logits"]},
            opset_version=17,
            dynamo=False,
        )
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(
            str(path),
            str(folder / "token.int8.onnx"),
            weight_type=QuantType.QInt8,
            per_channel=True,
        )
        path = folder / "token.int8.onnx"
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def prepare_batches(
    compressor: TokenCompressor, contexts: Sequence[tuple[str, list[str]]]
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The encoder inputs ``compress()`` builds, as padded length-sorted batches."""
    tok = compressor.tokenizer
    cfg = compressor.config
    rows: list[tuple[list[int], int]] = []
    for question, passages in contexts:
        q = tok(question, add_special_tokens=False)["input_ids"][: cfg.max_query_tokens]
        head = [tok.cls_token_id, *q, tok.sep_token_id]
        enc = tok(passages, add_special_tokens=False, return_offsets_mapping=True)
        for text, ids, offs in zip(passages, enc["input_ids"], enc["offset_mapping"], strict=True):
            for w in cut_windows(text, offs, cfg.max_window - len(head) - 1):
                rows.append(([*head, *ids[w.start : w.end], tok.sep_token_id], len(head)))
    rows.sort(key=lambda r: len(r[0]))
    batches = []
    for b in range(0, len(rows), cfg.batch_size):
        chunk = rows[b : b + cfg.batch_size]
        width = max(len(r) for r, _ in chunk)
        ids = torch.zeros((len(chunk), width), dtype=torch.long)
        types = torch.zeros_like(ids)
        mask = torch.zeros_like(ids)
        for i, (r, h) in enumerate(chunk):
            ids[i, : len(r)] = torch.tensor(r)
            types[i, h : len(r)] = 1
            mask[i, : len(r)] = 1
        batches.append((ids, types, mask))
    return batches


def speed(args: argparse.Namespace) -> dict[str, Any]:
    """Every mode in a fresh process."""
    rows = []
    for mode in args.modes:
        cmd = [
            sys.executable,
            __file__,
            "_mode",
            mode,
            "--threads",
            str(args.threads),
            "--questions",
            str(args.questions),
            "--repeats",
            str(args.repeats),
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(row))
        rows.append(row)
    return {"part": "speed", "machine": machine(), "rows": rows}


def speed_markdown(report: dict[str, Any]) -> str:
    """The speed table."""
    m = report["machine"]
    lines = [
        "# Token compressor speed (CPU)",
        "",
        f"Machine: {m['processor']}, {m['cpus']} cores, torch {m['torch']}. {m['note']}.",
        "",
        "| mode | threads | context tokens | encoder tokens | tokens/s (wall) | "
        "tokens/s (CPU) | encoder GFLOP/s | ms/request (wall) | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['mode']} | {r['threads']} | {r['context_tokens']} | {r['encoder_tokens']} | "
            f"{r['tokens_per_s_wall']} | {r['tokens_per_s_cpu']} | {r['gflop_per_s_wall']} | "
            f"{r['ms_per_request_wall']} | {r['peak_rss_mb']} |"
        )
    first = report["rows"][0]
    lines += [
        "",
        "Context tokens are counted in SmolLM2's tokenizer (the unit of budgets); encoder "
        "tokens are the MiniLM tokens actually run, the question repeated in every window "
        "included. tokens/s (CPU) = context tokens / process CPU seconds × threads: the rate "
        "the same threads reach on otherwise idle cores. Encoder GFLOP/s counts the "
        "multiply-adds of the real (unpadded) tokens: "
        f"{first['encoder_gflop'] * 1e3 / first['context_tokens']:.1f} MFLOP per context "
        "token here, so 10k tokens/s needs "
        f"{first['encoder_gflop'] * 1e4 / first['context_tokens']:.0f} GFLOP/s.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="part", required=True)
    p_speed = sub.add_parser("speed")
    p_speed.add_argument("--threads", type=int, default=2)
    p_speed.add_argument("--questions", type=int, default=60)
    p_speed.add_argument("--repeats", type=int, default=3)
    p_speed.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES + ORT_MODES)
    p_mode = sub.add_parser("_mode")
    p_mode.add_argument("mode", choices=MODES + ORT_MODES)
    p_mode.add_argument("--threads", type=int, default=2)
    p_mode.add_argument("--questions", type=int, default=60)
    p_mode.add_argument("--repeats", type=int, default=3)
    p_q = sub.add_parser("quality")
    p_q.add_argument("--split", choices=("val", "test"), default="val")
    p_q.add_argument("--questions", type=int, default=300)
    p_q.add_argument("--retrieved", type=int, default=4)
    p_q.add_argument("--threads", type=int, default=1)
    p_q.add_argument("--compressors", nargs="+", default=["token", "mig", "random", "truncate"])
    p_kv = sub.add_parser("kv")
    p_kv.add_argument("--ratio", type=float, default=4.0)
    p_kv.add_argument("--threads", type=int, default=1)
    p_kv.add_argument("--compressors", nargs="+", default=["token", "mig", "random", "truncate"])
    args = parser.parse_args(argv)
    if args.part == "_mode":
        print(json.dumps(run_mode(args.mode, args.threads, args.questions, args.repeats)))
    elif args.part == "speed":
        report = speed(args)
        write("token_speed", report, speed_markdown(report))
    elif args.part == "quality":
        report = quality(args)
        write(f"token_quality_{args.split}", report, quality_markdown(report))
    else:
        report = kv(args)
        write("token_kv", report, kv_markdown(report))


if __name__ == "__main__":
    main()
