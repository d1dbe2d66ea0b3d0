"""The retrieval benchmark's Markdown report and its targets."""

from __future__ import annotations

from pathlib import Path


def write_markdown(report: dict, path: Path) -> None:
    env = report["environment"]
    lines = [
        "# Retrieval benchmark: ragzip HybridIndex vs LangChain EnsembleRetriever",
        "",
        f"Run {report['started']} on {env['cpus']} CPU cores ({env['processor']}), "
        f"torch {env['torch']} with {env['torch_threads']} threads, Python {env['python']}, "
        f"MiniLM on {env.get('embedder_backend', 'torch')}. "
        "The cores are shared with other work; the 1-minute load average is recorded next to "
        "each measurement (above the core count means the run competed for CPU).",
        "",
        "Command: `" + report["command"] + "`",
        "",
        "## Corpus",
        "",
        report["corpus"]["description"],
        "",
    ]
    fid = report["corpus"].get("composed_embedding_fidelity")
    if fid:
        lines += [
            f"Composed vectors vs true MiniLM embeddings of the same synthetic texts "
            f"({fid['sample']} sampled): cosine mean {fid['cosine_mean']}, "
            f"5th percentile {fid['cosine_p5']}, min {fid['cosine_min']}; the composed vector "
            f"is the true one's nearest neighbour among the sample for "
            f"{fid['self_retrieval@1']:.1%} of them.",
            "",
        ]
    qe = report.get("query_embedding")
    if qe:
        lines += [
            "## Single-query embedding (MiniLM, one NQ question at a time)",
            "",
            "| setting | p50 ms | p95 ms | min ms | CPU p50 ms | queries | load avg |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for name, r in qe.items():
            lines.append(
                f"| {name} | {r['p50_ms']} | {r['p95_ms']} | {r['min_ms']} | {r['cpu_p50_ms']} | "
                f"{r['n']} | {r['loadavg_1min']} |"
            )
        lines.append("")
    idx = report.get("indexing")
    if idx:
        lines += [
            "## Indexing throughput (embedding included, real NQ passages)",
            "",
            "| system | passages | chunks | wall s | passages/s | CPU s | passages/CPU-s |"
            " load avg |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for name in ("ragzip", "ragzip_bfloat16", "langchain"):
            if name in idx:
                r = idx[name]
                lines.append(
                    f"| {name} | {idx['passages']} | {r['chunks']} | {r['seconds']} | "
                    f"{r['passages_per_s']} | {r['cpu_seconds']} | {r['passages_per_cpu_s']} | "
                    f"{r['loadavg_1min']} |"
                )
        stages = idx["ragzip"]["stages_s"]
        lines += [
            "",
            "ragzip stages (s): " + ", ".join(f"{k} {v}" for k, v in stages.items()),
            "",
            "CPU s is this process's CPU time (one thread): passages/CPU-s is the rate one "
            "uncontended core would give; wall time also holds waits for other work on the cores.",
            "",
        ]
    sizes = report.get("sizes", {})
    if sizes:
        lines += [
            "## Retrieve latency, one query at a time (query embedding included), k=10",
            "",
            "| chunks | system | p50 ms | p95 ms | mean ms | CPU p50 ms | CPU p95 ms | queries |"
            " load avg |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for size, r in sizes.items():
            h = r["ragzip_hybrid"]
            lines.append(
                f"| {size} | ragzip hybrid ({h['dense_kind']}) | {h['p50_ms']} | {h['p95_ms']} | "
                f"{h['mean_ms']} | {h['cpu_p50_ms']} | {h['cpu_p95_ms']} | {h['n']} | "
                f"{h['loadavg_1min']} |"
            )
            if "postgres_hybrid" in r:
                pg = r["postgres_hybrid"]
                lines.append(
                    f"| {size} | Postgres hybrid (pgvector HNSW + BM25) | {pg['p50_ms']} | "
                    f"{pg['p95_ms']} | {pg['mean_ms']} | {pg['cpu_p50_ms']} | {pg['cpu_p95_ms']} | "
                    f"{pg['n']} | {pg['loadavg_1min']} |"
                )
            if "langchain_ensemble" in r:
                lc = r["langchain_ensemble"]
                lines.append(
                    f"| {size} | LangChain ensemble (flat) | {lc['p50_ms']} | {lc['p95_ms']} | "
                    f"{lc['mean_ms']} | {lc['cpu_p50_ms']} | {lc['cpu_p95_ms']} | {lc['n']} | "
                    f"{lc['loadavg_1min']} |"
                )
        lines += [
            "",
            "### ragzip stages (p50 ms: wall / CPU)",
            "",
            "| chunks | query embedding | BM25 top-100 | faiss top-100 |",
            "|---:|---:|---:|---:|",
        ]
        for size, r in sizes.items():
            s = r["ragzip_stages"]
            faiss_key = next(k for k in s if k.startswith("faiss_"))
            cells = [
                f"{s[key]['p50_ms']} / {s[key]['cpu_p50_ms']}"
                for key in ("query_embedding", "bm25_top100", faiss_key)
            ]
            lines.append(f"| {size} | " + " | ".join(cells) + f" ({faiss_key.split('_')[1]}) |")
        lines += [
            "",
            "### Index construction without embedding (s)",
            "",
            "| chunks | ragzip BM25 | ragzip faiss | ragzip total | LangChain total |"
            " Postgres COPY + indexes (chunks/s) |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for size, r in sizes.items():
            st = r["ragzip_build"]["stages_s"]
            lc = r.get("langchain_build", {}).get("seconds", "-")
            pgl = r.get("postgres_load")
            pg_cell = f"{pgl['seconds']} ({pgl['chunks_per_s']})" if pgl else "-"
            lines.append(
                f"| {size} | {st['bm25']} | {st['faiss']} ({r['ragzip_build']['dense_kind']}) | "
                f"{st['total']} | {lc} | {pg_cell} |"
            )
        lines += [
            "",
            "### Dense search alone: flat vs HNSW (top-10, p50 ms, wall)",
            "",
            "| chunks | flat p50 | HNSW p50 | flat build s | HNSW build s | HNSW recall@10 vs"
            " flat |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for size, r in sizes.items():
            c = r["dense_flat_vs_hnsw"]
            lines.append(
                f"| {size} | {c['flat']['search_top10']['p50_ms']} | "
                f"{c['hnsw']['search_top10']['p50_ms']} | {c['flat']['build_s']} | "
                f"{c['hnsw']['build_s']} | {c['hnsw_recall@10_vs_flat']} |"
            )
        persist = {
            s: r["ragzip_persistence"] for s, r in sizes.items() if "ragzip_persistence" in r
        }
        if persist:
            lines += [
                "",
                "### Save / load (ragzip)",
                "",
                "| chunks | MB on disk | save s | load, sha256 verified s | load, size check s |",
                "|---:|---:|---:|---:|---:|",
            ]
            for size, p in persist.items():
                lines.append(
                    f"| {size} | {p['bytes'] / 1e6:.1f} | {p['save_s']} | "
                    f"{p['load_verify_sha256_s']} | {p['load_size_check_only_s']} |"
                )
    rec = report.get("recall")
    if rec:
        lines += [
            "",
            f"## Recall on NQ ({rec['questions']} questions over {rec['passages']} passages, "
            f"{rec['chunks']} chunks; gold = the question's own passage)",
            "",
            "| retriever | recall@1 | recall@5 | recall@10 | MRR@10 | test split: recall@1 "
            "| recall@10 |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        names = ("bm25", "dense", "hybrid", "postgres_bm25", "postgres_dense", "postgres_hybrid")
        for name in (*names, "langchain_ensemble"):
            if name in rec:
                r = rec[name]
                t = r.get("test", {})
                lines.append(
                    f"| {name} | {r['recall@1']} | {r['recall@5']} | {r['recall@10']} | "
                    f"{r['mrr@10']} | {t.get('recall@1', '-')} | {t.get('recall@10', '-')} |"
                )
        if "test_questions" in rec:
            lines += [
                "",
                f"Test split: the {rec['test_questions']} questions of "
                "`ragzip.experiments.datasets`' test split (the corpus stays all 2,000 passages).",
            ]
    lines += ["", "## Targets", ""]
    for t in report.get("targets", []):
        lines.append(f"- {t}")
    lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


def targets(report: dict) -> list[str]:
    out = []
    sizes = report.get("sizes", {})
    big = max((int(s) for s in sizes), default=None)
    if big is not None:
        p50 = sizes[str(big)]["ragzip_hybrid"]["p50_ms"]
        cpu50 = sizes[str(big)]["ragzip_hybrid"]["cpu_p50_ms"]
        verdict = "met" if p50 <= 10 else "NOT met"
        out.append(
            f"retrieve p50 <= 10 ms at {big} chunks: {p50} ms wall ({verdict}); "
            f"{cpu50} ms of CPU per query"
        )
    if "indexing" in report:
        pps = report["indexing"]["ragzip"]["passages_per_s"]
        verdict = "met" if pps >= 100 else "NOT met"
        out.append(f"indexing >= 100 passages/s: {pps} passages/s ({verdict})")
        if "ragzip_bfloat16" in report["indexing"]:
            pps = report["indexing"]["ragzip_bfloat16"]["passages_per_s"]
            verdict = "met" if pps >= 100 else "NOT met"
            out.append(f"indexing >= 100 passages/s with bfloat16: {pps} passages/s ({verdict})")
        cps = report["indexing"]["ragzip"]["passages_per_cpu_s"]
        out.append(f"indexing per CPU-second (one core, float32): {cps} passages")
    return out
