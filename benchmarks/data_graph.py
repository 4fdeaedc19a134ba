"""Data-graph benchmark: the seed-faithful baseline against the project's stage path, same corpus.

    python benchmarks/data_graph.py --pairs 95000                   # baseline + project (+ agreement)
    python benchmarks/data_graph.py --pairs 1000000 --no-baseline   # project only, scaling runs
    python benchmarks/data_graph.py --pairs 95000 --dagster         # also time dg.materialize of the assets

Each side runs in its own child process (so peak RSS is its own): per stage it reports wall seconds,
the peak RSS sampled during the stage and rows kept. The parent prints a table, checks agreement
(identical kept sets for the word, token, language and Jaccard filters; MinHash kept-set Jaccard
against the baseline) and ends with one JSON line. Setup (corpus generation, tokenizer training)
is timed separately and not counted in either side.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from llama_sft_dagster.assets.data_chain import LAST_STAGE, STAGE_NAMES  # noqa: E402 (after the path setup)

FILTERS = STAGE_NAMES[:-1]  # the row filters; the last stage (dedup) is compared by kept-set overlap
STAGES = [*STAGE_NAMES, "split"]


def child(side: str, work: Path, backend: str) -> None:
    from _measure import StageMeter, write_result

    meter = StageMeter()
    t0 = time.perf_counter()
    if side == "baseline":
        from baseline import run_baseline

        run_baseline(work / "raw_pairs" / "data.parquet", work / "base_model" / "model", work / "baseline", meter)
    elif side == "project":
        from project import run_project

        run_project(work, backend, meter)
    else:
        from project import run_dagster

        run_dagster(work, backend, meter)
    result = meter.finish()
    # total = the stages themselves; process_seconds also counts interpreter start-up imports
    result |= {"total_seconds": round(sum(s["seconds"] for s in result["stages"]), 3), "process_seconds": round(time.perf_counter() - t0, 3)}
    write_result(work / f"result_{side}_{backend}.json", result)


def run_child(side: str, work: Path, backend: str) -> dict:
    env = os.environ | {"TOKENIZERS_PARALLELISM": "true", "HF_DATASETS_CACHE": str(work / "hf_cache")}
    subprocess.run([sys.executable, __file__, "--child", side, "--work", str(work), "--backend", backend], check=True, env=env)
    return json.loads((work / f"result_{side}_{backend}.json").read_text())


def kept_ids(path: Path) -> set[str]:
    import pyarrow.parquet as pq

    return set(pq.read_table(path, columns=["pair_id"]).column("pair_id").to_pylist())


def agreement(work: Path) -> dict:
    out = {}
    for stage in FILTERS:
        base, proj = kept_ids(work / "baseline" / f"{stage}.parquet"), kept_ids(work / stage / "data.parquet")
        out[stage] = {"identical": base == proj, "only_baseline": len(base - proj), "only_project": len(proj - base)}
    base, proj = kept_ids(work / "baseline" / f"{LAST_STAGE}.parquet"), kept_ids(work / LAST_STAGE / "data.parquet")
    out[LAST_STAGE] = {"identical": base == proj, "kept_set_jaccard": round(len(base & proj) / max(1, len(base | proj)), 5),
                                 "only_baseline": len(base - proj), "only_project": len(proj - base)}
    return out


def machine() -> dict:
    import psutil

    return {"cores": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "cpu": platform.processor() or platform.machine(), "python": platform.python_version()}


def table(pairs: int, results: dict[str, dict]) -> str:
    names = list(results)
    head = f"{'stage':<22}" + "".join(f"{n + ' s':>16}{n + ' MB':>14}{'kept':>9}" for n in names)
    lines = [f"data graph, {pairs:,} raw pairs", head, "-" * len(head)]
    by_name = {n: {s["stage"]: s for s in r["stages"]} for n, r in results.items()}
    for stage in ["load"] + STAGES + ["dagster_materialize"]:
        if not any(stage in by_name[n] for n in names):
            continue
        row = f"{stage:<22}"
        for n in names:
            s = by_name[n].get(stage)
            row += f"{s['seconds']:>16.2f}{s['peak_rss_mb']:>14.0f}{s.get('rows_out', ''):>9}" if s else " " * 39
        lines.append(row)
    lines.append(f"{'total (stages)':<22}" + "".join(f"{r['total_seconds']:>16.2f}{r['process_peak_rss_mb']:>14.0f}{'':>9}" for r in results.values()))
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description="Seed baseline vs project on the data graph (raw -> split).")
    p.add_argument("--pairs", type=int, default=95_000)
    p.add_argument("--work", type=Path, default=None, help="Working folder (default: .bench/<pairs>).")
    p.add_argument("--backend", action="append", help="Dedup backend(s) of the project side (default: rensa and datasketch).")
    p.add_argument("--no-baseline", action="store_true", help="Skip the seed baseline (e.g. at 1M pairs).")
    p.add_argument("--dagster", action="store_true", help="Also time dg.materialize of the data assets.")
    p.add_argument("--child", choices=["baseline", "project", "dagster"], help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        return child(a.child, a.work, a.backend[0])
    from _measure import build_tokenizer
    from corpus import write_corpus

    work = (a.work or Path(".bench") / str(a.pairs)).resolve()
    backends = a.backend or ["rensa", "datasketch"]
    setup = {}
    raw = work / "raw_pairs" / "data.parquet"
    if not raw.exists():
        t0 = time.perf_counter()
        write_corpus(a.pairs, raw)
        setup["corpus_seconds"] = round(time.perf_counter() - t0, 2)
    if not (work / "base_model" / "model" / "tokenizer_config.json").exists():
        t0 = time.perf_counter()
        build_tokenizer(raw, work / "base_model" / "model")
        setup["tokenizer_seconds"] = round(time.perf_counter() - t0, 2)
    results, agree = {}, {}
    if not a.no_baseline:
        shutil.rmtree(work / "baseline", ignore_errors=True)
        results["baseline"] = run_child("baseline", work, "datasketch")
    for backend in backends:
        results[f"project[{backend}]"] = run_child("project", work, backend)
        if not a.no_baseline:
            agree[backend] = agreement(work)
    if a.dagster:
        results[f"dagster[{backends[0]}]"] = run_child("dagster", work, backends[0])
    print(table(a.pairs, results))
    summary = {"pairs": a.pairs, "date": time.strftime("%Y-%m-%d"), "machine": machine(), "setup": setup,
               "totals_seconds": {n: r["total_seconds"] for n, r in results.items()},
               "peak_rss_mb": {n: r["process_peak_rss_mb"] for n, r in results.items()}}
    if "baseline" in results:
        base = results["baseline"]
        summary["speedup_total"] = {n: round(base["total_seconds"] / r["total_seconds"], 1) for n, r in results.items() if n != "baseline"}
        bs = {s["stage"]: s["seconds"] for s in base["stages"]}
        summary["speedup_per_stage"] = {n: {s["stage"]: round(bs[s["stage"]] / max(s["seconds"], 1e-3), 1) for s in r["stages"] if s["stage"] in bs}
                                        for n, r in results.items() if n.startswith("project")}
        summary["agreement"] = agree
        for backend, ag in agree.items():
            print(f"agreement [{backend}]: " + ", ".join(f"{k}={'identical' if v['identical'] else v}" for k, v in ag.items()))
    summary["results"] = results
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
