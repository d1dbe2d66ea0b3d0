"""Profile compressors against a generator, then check the predicted break-even lengths.

For one generator — ``embedded`` (SmolLM2 in-process) or ``loopback`` (the same model served by
``ragzip serve-model`` in a child process, measured over HTTP with streaming) — this runs
``ragzip profile --check``: it measures T_c, TTFT and decode over a grid of lengths and ratios,
fits the cost models, predicts n* per (compressor, ratio), and measures again at 0.5·n*, n* and
1.5·n*. The profile, its plots and the check land in ``benchmarks/results/profile/<generator>/``;
``benchmarks/results/profile_check.{json,md}`` collect the runs of every generator (a new run
replaces the earlier run of the same generator).

Run timing-sensitive, one generator per call (each well under 10 minutes)::

    /work/notes/heavy --exclusive python benchmarks/profile_check.py --generator embedded
    /work/notes/heavy --exclusive python benchmarks/profile_check.py --generator loopback
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DATA = ROOT.parent / "shared" / "data" / "nq_open_dev.jsonl.gz"


@contextmanager
def model_server(port: int) -> Iterator[str]:
    """``ragzip serve-model`` in a child process on 127.0.0.1; yields its base URL."""
    cmd = [
        sys.executable,
        "-c",
        "from ragzip.cli import app; app()",
        "serve-model",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                msg = f"the model server exited with {proc.returncode}"
                raise RuntimeError(msg)
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                msg = "the model server did not come up in 180 s"
                raise RuntimeError(msg)
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def refit_and_check(args: Any, out: Path, common: dict[str, Any]) -> tuple[Any, list[Path]]:
    """Refit the profile in ``out`` from its measured samples, then measure the check again."""
    from ragzip.profiling.check import check_profile, render_check_markdown
    from ragzip.profiling.measure import fit_profile, load_nq_passages
    from ragzip.profiling.output import CHECK_JSON, CHECK_MD, plot_profile
    from ragzip.profiling.profile import Profile, save_profile
    from ragzip.registry import create_compressor

    doc = json.loads((out / "profile.json").read_text(encoding="utf-8"))
    old = Profile.from_dict(next(iter(doc["profiles"].values())))
    profile = fit_profile(
        generator=old.generator,
        generation=old.generation_samples,
        compression=old.compression_samples,
        expected_output_tokens=old.expected_output_tokens,
        kv_bytes_per_token=old.kv_bytes_per_token,
        max_context_tokens=old.max_context_tokens,
        peak_rss=old.peak_rss_bytes,
        machine=old.machine,
    )
    (out / "profile.json").unlink()
    files = [save_profile(profile, out / "profile.json"), *plot_profile(profile, out)]
    pool = load_nq_passages(DATA, limit=200)

    def check(generator: Any) -> Any:
        names = sorted({c.compressor for c in profile.compressors})
        built = {n: create_compressor(n, counter=generator.counter) for n in names}
        return check_profile(
            profile,
            generator,
            built,
            pool,
            repeats=args.check_repeats,
            ratios=common["check_ratios"],
            progress=common["progress"],
        )

    if args.generator == "embedded":
        from ragzip.generators.embedded import EmbeddedGenerator

        report = check(EmbeddedGenerator())
    else:
        from ragzip.generators.openai_compat import OpenAIGenerator
        from ragzip.weights import SMOLLM2_NAME, smollm2_counter

        with (
            model_server(args.port) as url,
            OpenAIGenerator(url, SMOLLM2_NAME, counter=smollm2_counter()) as remote,
        ):
            report = check(remote)
    from ragzip.experiments.reporting import json_ready

    (out / CHECK_JSON).write_text(
        json.dumps(json_ready(report.to_dict()), indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    (out / CHECK_MD).write_text(render_check_markdown([report]), encoding="utf-8")
    return profile, [*files, out / CHECK_JSON, out / CHECK_MD]


def _summary(profile: Any, report: Any) -> dict[str, Any]:
    pairs = []
    for c in profile.compressors:
        n_ttft = profile.break_even(c.compressor, c.ratio)
        n_e2e = profile.break_even(c.compressor, c.ratio, end_to_end=True)
        pairs.append(
            {
                "compressor": c.compressor,
                "ratio": c.ratio,
                "achieved_ratio": c.achieved_ratio,
                "t_c_ms_per_1k_tokens": 1e6 * c.cost.slope,
                "t_c_fixed_ms": 1e3 * c.cost.intercept,
                "n_star_ttft": n_ttft,
                "n_star_end_to_end": n_e2e,
            }
        )
    return {
        "generator": profile.generator,
        "machine": profile.machine,
        "created_at": profile.created_at,
        "ttft_model": {"a": profile.ttft.a, "b": profile.ttft.b, "c": profile.ttft.c},
        "decode_s_per_token": {
            "intercept": profile.decode.intercept,
            "slope": profile.decode.slope,
        },
        "prompt_overhead_tokens": profile.prompt_overhead_tokens,
        "prompt_overhead_per_token": profile.prompt_overhead_per_token,
        "expected_output_tokens": profile.expected_output_tokens,
        "kv_bytes_per_token": profile.kv_bytes_per_token,
        "peak_rss_bytes": profile.peak_rss_bytes,
        "pairs": pairs,
        "check": report,
    }


def _render(doc: dict[str, Any]) -> str:
    from ragzip.profiling.check import CheckPoint, CheckReport, render_check_markdown

    lines = [
        "# Break-even profile check",
        "",
        "Each generator was profiled (`ragzip profile`: T_c, TTFT and decode over a grid of "
        "lengths and ratios, medians of repeated runs after a warm-up), the break-even length "
        "n* (smallest n with T_c(n) + TTFT(n/r) < TTFT(n)) was predicted from the fitted "
        "models, and latency was measured again on fresh contexts at 0.5·n*, n* and 1.5·n*. "
        "`pred / meas` are predicted and measured milliseconds; `err` is predicted/measured − 1.",
        "",
    ]
    for name, run in sorted(doc["runs"].items()):
        lines += [
            f"## {name}",
            "",
            f"Command: `{run['command']}` under `/work/notes/heavy`, "
            f"OMP_NUM_THREADS={run['omp_num_threads']}, {run['seconds']:.0f} s  ",
            f"Profile: `{run['profile_dir']}/profile.json`; plots `latency.png`, `speedup.png`.",
            *(
                [
                    "",
                    f"Samples measured by `{run['profiled_by']['command']}` "
                    f"({run['profiled_by']['seconds']:.0f} s); {run['profiled_by']['note']}.",
                ]
                if "profiled_by" in run
                else []
            ),
            "",
            "| compressor | ratio | achieved | T_c ms/1k tok | n* TTFT | n* end-to-end |",
            "|---|---|---|---|---|---|",
        ]
        for p in run["summary"]["pairs"]:
            lines.append(
                f"| {p['compressor']} | {p['ratio']:g}x | {p['achieved_ratio']:.2f}x "
                f"| {p['t_c_ms_per_1k_tokens']:.2f} | {p['n_star_ttft'] or 'never'} "
                f"| {p['n_star_end_to_end'] or 'never'} |"
            )
        s = run["summary"]
        kv = s["kv_bytes_per_token"]
        lines += [
            "",
            f"Peak RSS while profiling: {s['peak_rss_bytes'] / 2**20:.0f} MiB (client process)."
            + (f" KV cache: {kv} bytes per token." if kv else ""),
            "",
        ]
        chk = s["check"]
        points = tuple(
            CheckPoint(**{k: v for k, v in p.items() if k in CheckPoint.__dataclass_fields__})
            for p in chk["points"]
        )
        report = CheckReport(
            machine=chk["machine"],
            generator=chk["generator"],
            points=points,
            skipped=chk["skipped"],
            tolerance=chk["tolerance"],
            peak_rss_bytes=chk["peak_rss_bytes"],
        )
        lines.append(render_check_markdown([report]))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", choices=["embedded", "loopback"], required=True)
    parser.add_argument("--compressors", default="truncate,mig,token")
    parser.add_argument("--lengths", default="128,256,512,1024,2048,3072")
    parser.add_argument("--ratios", default="2,4,8")
    parser.add_argument("--check-ratios", default="4", help="Ratios whose n* is checked.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--check-repeats", type=int, default=5)
    parser.add_argument("--expected-output-tokens", type=int, default=16)
    parser.add_argument("--port", type=int, default=18001, help="Loopback model server port.")
    parser.add_argument(
        "--refit",
        action="store_true",
        help="Refit the saved profile's own samples with the current models, then check again.",
    )
    args = parser.parse_args()

    from ragzip.profiling.command import run_profile

    out = RESULTS / "profile" / args.generator
    common = {
        "compressors": args.compressors.split(","),
        "lengths": [int(v) for v in args.lengths.split(",")],
        "ratios": [float(v) for v in args.ratios.split(",")],
        "repeats": args.repeats,
        "out_dir": out,
        "expected_output_tokens": args.expected_output_tokens,
        "data": DATA,
        "progress": lambda line: print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True),
        "check_repeats": args.check_repeats,
        "check_ratios": [float(v) for v in args.check_ratios.split(",")],
    }
    t0 = time.perf_counter()
    if args.refit:
        profile, files = refit_and_check(args, out, common)
    elif args.generator == "embedded":
        from ragzip.generators.embedded import EmbeddedGenerator

        (out / "profile.json").unlink(missing_ok=True)  # one profile per run
        profile, files = run_profile(generator=EmbeddedGenerator(), **common)
    else:
        from ragzip.generators.openai_compat import OpenAIGenerator
        from ragzip.weights import SMOLLM2_NAME, smollm2_counter

        (out / "profile.json").unlink(missing_ok=True)  # one profile per run
        with (
            model_server(args.port) as url,
            OpenAIGenerator(url, SMOLLM2_NAME, counter=smollm2_counter()) as remote,
        ):
            profile, files = run_profile(generator=remote, max_context_tokens=8192, **common)
    seconds = time.perf_counter() - t0
    report = json.loads((out / "check.json").read_text(encoding="utf-8"))

    path = RESULTS / "profile_check.json"
    doc: dict[str, Any] = {"schema": "ragzip-profile-check/1", "runs": {}}
    if path.is_file():
        doc = json.loads(path.read_text(encoding="utf-8"))
    threads = os.environ.get("OMP_NUM_THREADS", "default")
    doc["runs"][args.generator] = {
        "command": "python benchmarks/profile_check.py " + shlex.join(sys.argv[1:]),
        "omp_num_threads": threads,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "profile_dir": str(out.relative_to(ROOT)),
        "files": [str(Path(f).relative_to(ROOT)) for f in files],
        "summary": _summary(profile, report),
    }
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    (RESULTS / "profile_check.md").write_text(_render(doc), encoding="utf-8")
    print(f"wrote {path} and profile_check.md in {seconds:.0f} s", flush=True)


if __name__ == "__main__":
    main()
