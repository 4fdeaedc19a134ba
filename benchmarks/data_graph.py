"""Data-graph benchmark: the seed-faithful baseline against the project's stage path, same corpus.

    python benchmarks/data_graph.py --pairs 95000                   # baseline + project (+ agreement)
    python benchmarks/data_graph.py --pairs 1000000 --no-baseline   # project only, scaling runs
    python benchmarks/data_graph.py --pairs 95000 --dagster         # also time dg.materialize of the assets
    python benchmarks/data_graph.py --pairs 95000 --dagster --repeats 3   # three rounds back to back

Each side runs in its own child process (so peak RSS is its own): per stage it reports wall seconds,
the peak RSS sampled during the stage and rows kept. The parent prints a table, checks agreement
(identical kept sets for the word, token, language and Jaccard filters; MinHash kept-set Jaccard
against the baseline) and ends with one JSON line. Setup (corpus generation, copying the tokenizer)
is not counted in either side. The token filter uses the real Llama 3 tokenizer from ../shared/data
(`--tokenizer DIR` for another, `--tokenizer train` for a 16K BPE trained on the corpus).
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
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from llama_sft_dagster.assets.data_chain import STAGE_NAMES  # noqa: E402 (after the path setup)

FILTERS = STAGE_NAMES[:-1]  # the row filters; the last stage (dedup) is also compared by kept-set overlap
STAGES = [*STAGE_NAMES, "split"]


def child(side: str, work: Path, backend: str, floors: bool = False) -> None:
    from _measure import StageMeter, write_result

    meter = StageMeter()
    meter.floors = {}
    t0 = time.perf_counter()
    if side == "baseline":
        from baseline import run_baseline

        run_baseline(work / "raw_pairs" / "data.parquet", work / "base_model" / "model", work / "baseline", meter)
    elif side == "project":
        from project import run_project

        run_project(work, backend, meter)
        if floors:
            from project import lingua_floor

            lingua_floor(work, meter)
    else:
        from project import run_dagster

        run_dagster(work, backend, meter)
    result = meter.finish() | {"floors": meter.floors}
    # total = the stages themselves; process_seconds also counts interpreter start-up imports
    result |= {
        "total_seconds": round(sum(s["seconds"] for s in result["stages"]), 3),
        "process_seconds": round(time.perf_counter() - t0, 3),
    }
    write_result(work / f"result_{side}_{backend}.json", result)


def run_child(side: str, work: Path, backend: str, floors: bool = False) -> dict:
    env = os.environ | {"TOKENIZERS_PARALLELISM": "true", "HF_DATASETS_CACHE": str(work / "hf_cache")}
    subprocess.run(
        [sys.executable, __file__, "--child", side, "--work", str(work), "--backend", backend]
        + (["--floors"] if floors else []),
        check=True,
        env=env,
    )
    return json.loads((work / f"result_{side}_{backend}.json").read_text())


def kept_rows(path: Path) -> Counter:
    """The kept rows as a multiset of (instruction, response): the seed's dataset has no ids."""
    import pyarrow.parquet as pq

    t = pq.read_table(path, columns=["instruction", "response"])
    return Counter(zip(t.column(0).to_pylist(), t.column(1).to_pylist()))


def agreement(work: Path) -> dict:
    out = {}
    for stage in STAGE_NAMES:
        base, proj = kept_rows(work / "baseline" / f"{stage}.parquet"), kept_rows(work / stage / "data.parquet")
        out[stage] = {
            "identical": base == proj,
            "only_baseline": (base - proj).total(),
            "only_project": (proj - base).total(),
            "kept_set_jaccard": round((base & proj).total() / max(1, (base | proj).total()), 5),
        }
    return out


def machine() -> dict:
    import psutil

    return {
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def table(pairs: int, results: dict[str, dict]) -> str:
    """Per stage: seconds (and ratio baseline / side), peak RSS and rows kept for every side."""
    names = list(results)
    base = {s["stage"]: s["seconds"] for s in results["baseline"]["stages"]} if "baseline" in results else {}
    head = f"{'stage':<22}" + "".join(f"{n + ' s':>24}{'MB':>7}{'kept':>8}" for n in names)
    lines = [f"data graph, {pairs:,} raw pairs (ratio = baseline s / side s, same run)", head, "-" * len(head)]
    by_name = {n: {s["stage"]: s for s in r["stages"]} for n, r in results.items()}
    for stage in ["load"] + STAGES + ["dagster_materialize"]:
        if not any(stage in by_name[n] for n in names):
            continue
        row = f"{stage:<22}"
        for n in names:
            s = by_name[n].get(stage)
            if not s:
                row += " " * 39
                continue
            ratio = f" ({base[stage] / max(s['seconds'], 1e-3):.1f}x)" if stage in base and n != "baseline" else ""
            row += f"{s['seconds']:>8.2f}{ratio:>16}{s['peak_rss_mb']:>7.0f}{s.get('rows_out', ''):>8}"
        lines.append(row)
    total = results["baseline"]["total_seconds"] if "baseline" in results else None
    row = f"{'total (stages)':<22}"
    for n, r in results.items():
        ratio = f" ({total / r['total_seconds']:.1f}x)" if total and n != "baseline" else ""
        row += f"{r['total_seconds']:>8.2f}{ratio:>16}{r['process_peak_rss_mb']:>7.0f}{'':>8}"
    lines.append(row)
    return "\n".join(lines)


def prepare_tokenizer(source: str, raw: Path, dest: Path) -> str:
    """Put the token filter's tokenizer where both sides read it (`<work>/base_model/model`).

    `source` is a tokenizer folder (default: the real Llama 3 tokenizer in ../shared/data) or "train"
    for a 16K byte-level BPE trained on the corpus (offline stand-in when the real one is absent)."""
    from _measure import build_tokenizer

    shutil.rmtree(dest, ignore_errors=True)
    if source == "train":
        build_tokenizer(raw, dest)
        return "16K byte-level BPE trained on the corpus"
    src = Path(source)
    if not (src / "tokenizer.json").exists():
        raise SystemExit(f"no tokenizer.json in {src}: pass --tokenizer DIR, or --tokenizer train for a stand-in")
    dest.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file():
            shutil.copy2(f, dest / f.name)
    return f"{src.name} ({src.resolve()})"


def run_round(work: Path, a, backends: list[str]) -> tuple[dict, dict]:
    results, agree = {}, {}
    if not a.no_baseline:
        shutil.rmtree(work / "baseline", ignore_errors=True)
        results["baseline"] = run_child("baseline", work, "datasketch")
    for n, backend in enumerate(backends):
        results[f"project[{backend}]"] = run_child("project", work, backend, floors=a.floors and n == 0)
        if not a.no_baseline:
            agree[backend] = agreement(work)
    if a.dagster:
        for backend in a.dagster_backend or backends:
            results[f"dagster[{backend}]"] = run_child("dagster", work, backend)
    return results, agree


def ratios(results: dict) -> dict:
    if "baseline" not in results:
        return {}
    base = results["baseline"]
    bs = {s["stage"]: s["seconds"] for s in base["stages"]}
    return {
        n: {
            "total": round(base["total_seconds"] / r["total_seconds"], 2),
            **{s["stage"]: round(bs[s["stage"]] / max(s["seconds"], 1e-3), 2) for s in r["stages"] if s["stage"] in bs},
        }
        for n, r in results.items()
        if n != "baseline"
    }


def main() -> None:
    p = argparse.ArgumentParser(description="Seed baseline vs project on the data graph (raw -> split).")
    p.add_argument("--pairs", type=int, default=95_000)
    p.add_argument("--work", type=Path, default=None, help="Working folder (default: .bench/<pairs>).")
    p.add_argument(
        "--backend", action="append", help="Dedup backend(s) of the project side (default: rensa and datasketch)."
    )
    p.add_argument("--no-baseline", action="store_true", help="Skip the seed baseline (e.g. at 1M pairs).")
    p.add_argument("--dagster", action="store_true", help="Also time dg.materialize of the data assets.")
    p.add_argument(
        "--dagster-backend", action="append", help="Dedup backend(s) of the Dagster runs (default: those of --backend)."
    )
    p.add_argument("--repeats", type=int, default=1, help="Rounds of all sides back to back (ratios are per round).")
    p.add_argument(
        "--tokenizer",
        default=str(HERE.parent.parent / "shared" / "data" / "llama31_tokenizer"),
        help="Tokenizer folder of the token filter (default: the real Llama 3 tokenizer in ../shared/data), "
        "or 'train' for a 16K BPE trained on the corpus.",
    )
    p.add_argument("--floors", action="store_true", help="Also time lingua's parallel call alone (first backend).")
    p.add_argument("--child", choices=["baseline", "project", "dagster"], help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        return child(a.child, a.work, a.backend[0], a.floors)
    from corpus import write_corpus

    work = (a.work or Path(".bench") / str(a.pairs)).resolve()
    backends = a.backend or ["rensa", "datasketch"]
    setup = {}
    raw = work / "raw_pairs" / "data.parquet"
    if not raw.exists():
        t0 = time.perf_counter()
        write_corpus(a.pairs, raw)
        setup["corpus_seconds"] = round(time.perf_counter() - t0, 2)
    setup["tokenizer"] = prepare_tokenizer(a.tokenizer, raw, work / "base_model" / "model")
    summary = {
        "pairs": a.pairs,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "setup": setup,
        "rounds": [],
    }
    for r in range(a.repeats):
        results, agree = run_round(work, a, backends)
        print(f"\nround {r + 1}/{a.repeats}, load average {os.getloadavg()[0]:.2f}")
        print(table(a.pairs, results))
        for side, res in results.items():
            notes = {
                s["stage"]: {k: v for k, v in s.items() if k not in ("stage", "seconds", "peak_rss_mb", "rows_out")}
                for s in res["stages"]
            }
            notes = {k: v for k, v in notes.items() if v}
            if notes or res.get("floors"):
                print(
                    f"  {side}: {json.dumps(notes)}"
                    + (f" floors: {json.dumps(res['floors'])}" if res.get("floors") else "")
                )
        for backend, ag in agree.items():
            print(
                f"agreement [{backend}]: "
                + ", ".join(f"{k}={'identical' if v['identical'] else v}" for k, v in ag.items())
            )
        summary["rounds"].append(
            {
                "ratios": ratios(results),
                "agreement": agree,
                "results": results,
                "totals_seconds": {n: x["total_seconds"] for n, x in results.items()},
                "peak_rss_mb": {n: x["process_peak_rss_mb"] for n, x in results.items()},
            }
        )
    summary["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    if not a.no_baseline:
        import statistics

        print("\ntotal ratio per round (median):")
        for side in summary["rounds"][0]["ratios"]:
            per_round = [rd["ratios"][side]["total"] for rd in summary["rounds"]]
            print(f"  {side:<22}{' / '.join(f'{x:.2f}x' for x in per_round)}  ({statistics.median(per_round):.2f}x)")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
