"""Stage-1 load test: many demo clips through the real ``extract_faces`` stage, memory sampled.

    python benchmarks/stage1_load.py --clips 500 --workers 2 [--unique 100] [--worker-max-tasks N]
        [--work /tmp/load] [--json out.json] [--plot rss.png [--compare earlier.json ...]]
    python benchmarks/stage1_load.py --plot rss.png --compare a.json b.json   # redraw saved runs only

Builds a MELD-shaped corpus of ``--clips`` utterance clips in one split (``train``), 5 per dialogue,
from the demo generator (params.yaml ``demo``, shortened to 1.5-2 s clips); with ``--unique K`` only
K clips are rendered and the corpus reuses them (hard links) under new utterance ids, which saves
the rendering time and changes nothing for the stage (each clip is still decoded and analysed).
Then runs ``prepare`` and ``extract_faces`` (``--workers`` processes, each replaced after
``--worker-max-tasks`` clip steps, default params.yaml's; everything else from params.yaml
``stage1``) as subprocesses and samples, every ``--interval`` seconds, the RSS summed
over the stage's whole process tree (main process + pool workers) and the number of clips finished
(lines of the stage's journal). Prints the peak RSS, the RSS when 10%, 50% and 100% of the clips
were done and its median over each 10% of the clips (a flat profile: the same values throughout),
each process' RSS at 10/50/100% (where a growth is; the pool workers summed, as the recycled ones
come and go) and how many worker processes were started, the RSS slope over the run (MiB per
100 clips, fitted from 10% on) and the throughput (clips/s overall, and from 10% to 100% without
the start-up). ``--plot`` draws the tree's RSS against the clips done (PNG), with the runs saved
by ``--json`` given to ``--compare`` on the same axes.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
PER_DIALOGUE = 5


def build_corpus(n: int, unique: int, root: Path, seed: int) -> Path:
    """``root/MELD.Raw`` with ``n`` train clips (``unique`` rendered, the rest hard links) + CSV."""
    from stage1_face_extraction.common.config import from_dict
    from stage1_face_extraction.demo.generate import DemoConfig, generate_corpus

    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    demo = {**params["demo"], "seed": seed, "dialogues_per_split": {"train": -(-unique // PER_DIALOGUE)},
            "utterances_min": PER_DIALOGUE, "utterances_max": PER_DIALOGUE, "duration_min_s": 1.5,
            "duration_max_s": 2.0}
    src = root / "rendered"
    if not (src / "train_sent_emo.csv").is_file():
        t0 = time.perf_counter()
        generate_corpus(from_dict(DemoConfig, demo, "demo"), src)
        print(f"rendered {unique} demo clips in {time.perf_counter() - t0:.0f} s", flush=True)
    rows = list(csv.DictReader(io.StringIO((src / "train_sent_emo.csv").read_text(encoding="utf-8"), newline="")))
    meld = root / "MELD.Raw"
    clips = meld / "train_splits"
    clips.mkdir(parents=True, exist_ok=True)
    out_rows = []
    for i in range(n):
        r = dict(rows[i % len(rows)])
        d, u = divmod(i, PER_DIALOGUE)
        target = clips / f"dia{d}_utt{u}.mp4"
        if not target.exists():
            os.link(src / "train_splits" / f"dia{r['Dialogue_ID']}_utt{r['Utterance_ID']}.mp4", target)
        r.update({"Sr No.": str(i + 1), "Dialogue_ID": str(d), "Utterance_ID": str(u)})
        out_rows.append(r)
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\r\n")
    w.writeheader()
    w.writerows(out_rows)
    (meld / "train_sent_emo.csv").write_text(buf.getvalue(), encoding="utf-8", newline="")
    return meld


def _tree_rss(proc: psutil.Process, workers: set[int]) -> dict[int, int]:
    """``{pid: RSS bytes}`` of the process and its descendants; adds the pool workers' pids (spawned
    interpreters, not multiprocessing's resource tracker) to ``workers``."""
    out = {}
    for p in [proc, *proc.children(recursive=True)]:
        try:
            out[p.pid] = p.memory_info().rss
            if p.pid != proc.pid and p.pid not in workers and "spawn_main" in " ".join(p.cmdline()):
                workers.add(p.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


def _lines(path: Path) -> int:
    try:
        with open(path, "rb") as fh:
            return sum(1 for _ in fh)
    except OSError:
        return 0


def run_stage(meld: Path, work: Path, workers: int, n: int, interval: float, max_tasks: int | None = None) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["data"].update(meld_root=str(meld), splits={"train": {"csv": "train_sent_emo.csv",
                                                                 "clips": "train_splits"}})
    params["runtime"]["stage1"]["workers"] = workers  # runner knobs: params.yaml's runtime section
    if max_tasks is not None:
        params["runtime"]["stage1"]["worker_max_tasks"] = max_tasks
    ppath = work / "params.yaml"
    ppath.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    table = work / "utterances.parquet"
    subprocess.run([sys.executable, "-m", "stage1_face_extraction.stages.prepare", "--params", str(ppath),
                    "--out", str(table)], check=True, env=env, cwd=work)
    out = work / "faces"
    cmd = [sys.executable, "-m", "stage1_face_extraction.stages.extract_faces", "--params", str(ppath),
           "--utterances", str(table), "--meld-root", str(meld), "--out", str(out), "--summary",
           str(work / "faces_summary.json")]
    shutil.rmtree(out, ignore_errors=True)  # a kept folder would be resumed, not measured
    journal = out / "train" / ".journal.jsonl"
    samples = []  # (seconds, clips done, tree RSS bytes, processes)
    per_pid = []  # {pid: RSS bytes} of each sample
    worker_pids: set[int] = set()
    with open(work / "extract_faces.log", "wb") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work)
        ps = psutil.Process(proc.pid)
        while proc.poll() is None:
            rss = _tree_rss(ps, worker_pids)
            done = _lines(journal) if journal.exists() else (n if (out / "train" / "manifest.jsonl").exists() else 0)
            samples.append((time.perf_counter() - t0, done, sum(rss.values()), len(rss)))
            per_pid.append(rss)
            time.sleep(interval)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"extract_faces failed ({proc.returncode}); see {work / 'extract_faces.log'}")
    summary = json.loads((work / "faces_summary.json").read_text())
    return {"samples": samples, "per_pid": per_pid, "wall_s": wall, "summary": summary, "main_pid": proc.pid,
            "worker_pids": worker_pids, "worker_max_tasks": params["runtime"]["stage1"].get("worker_max_tasks")}


def analyse(samples: list, n: int, wall: float, per_pid: list[dict[int, int]] | None = None,
            main_pid: int | None = None, worker_pids: set[int] | None = None) -> dict:
    t = np.array([s[0] for s in samples])
    done = np.array([s[1] for s in samples])
    rss = np.array([s[2] for s in samples]) / 2**20

    def at(frac: float) -> int:
        """Index of the first sample with >= frac of the clips done (the last sample if none)."""
        idx = np.nonzero(done >= frac * n)[0]
        return int(idx[0]) if len(idx) else len(samples) - 1

    i10, i50, i100 = at(0.10), at(0.50), at(1.0)
    t10, t100 = float(t[i10]), float(t[i100])
    r10, r50, r100 = float(rss[i10]), float(rss[i50]), float(rss[i100])
    deciles = []  # median RSS over each 10 % of the clips: a flat profile has equal values
    for k in range(10):
        sel = (done >= k * n / 10) & (done < (k + 1) * n / 10)
        deciles.append(round(float(np.median(rss[sel])), 1) if sel.any() else None)
    by_process = {}  # where a growth is: each process' RSS at 10% / 50% / 100% of the clips
    if per_pid:
        for pid in sorted({p for d in per_pid for p in d}, key=lambda p: (p != main_pid, p)):
            vals = [per_pid[i].get(pid) for i in (i10, i50, i100)]
            if None not in vals:
                role = "main" if pid == main_pid else f"child {pid}"
                by_process[role] = [round(v / 2**20, 1) for v in vals]
        if worker_pids:
            by_process["pool workers (sum)"] = [
                round(sum(v for p, v in per_pid[i].items() if p in worker_pids) / 2**20, 1) for i in (i10, i50, i100)]
    steady = done >= 0.10 * n
    slope = (
        float(np.polyfit(done[steady], rss[steady], 1)[0] * 100) if steady.sum() > 2 and np.ptp(done[steady]) else 0.0
    )
    return {
        "clips": n, "wall_s": round(wall, 1), "clips_per_s": round(n / wall, 3),
        "clips_per_s_10_to_100": round(0.9 * n / max(t100 - t10, 1e-9), 3),
        "peak_rss_mib": round(float(rss.max()), 1), "rss_mib_at_10pct": round(r10, 1),
        "rss_mib_at_50pct": round(r50, 1), "rss_mib_at_100pct": round(r100, 1),
        "rss_slope_mib_per_100_clips": round(slope, 2), "processes": int(max(s[3] for s in samples)),
        "samples": len(samples), "rss_mib_median_by_decile": deciles,
        "rss_mib_by_process_10_50_100pct": by_process, "worker_processes_started": len(worker_pids or ()),
    }


def _label(run: dict) -> str:
    mt = run.get("worker_max_tasks")
    pool = ("workers never replaced" if mt == 0 else f"workers replaced every {mt} steps" if mt
            else "worker_max_tasks not recorded")
    return f"{pool}: {run['clips_per_s']} clips/s, peak {run['peak_rss_mib']:.0f} MiB"


def plot(runs: list[dict], path: Path) -> None:
    """RSS of the process tree against the clips done, one line per run (a ``--json`` result)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=110)
    for run in runs:
        done = np.array([s[1] for s in run["samples"]])
        rss = np.array([s[2] for s in run["samples"]]) / 2**20
        ax.plot(done, rss, lw=0.8, label=_label(run))
    n = max(run["clips"] for run in runs)
    w, cpus = runs[0].get("workers", "?"), runs[0].get("cpu_count", "?")
    ax.set(xlabel="clips done", ylabel="RSS of extract_faces' processes (MiB)", xlim=(0, n),
           title=f"stage 1 on {n} clips, {w} workers ({cpus}-core machine)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    print(f"plot: {path}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, help="clips to run (default 500; omitted with --plot --compare: none)")
    ap.add_argument("--unique", type=int, default=0, help="clips to render (0 = all); the rest reuse them")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--worker-max-tasks", type=int, help="runtime.stage1.worker_max_tasks (default: params.yaml's)")
    ap.add_argument("--work", type=Path, help="work folder (default: a new temp folder, kept)")
    ap.add_argument("--interval", type=float, default=0.5, help="seconds between memory samples")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", type=Path, help="also write the results (and every sample) here")
    ap.add_argument("--plot", type=Path, help="draw the RSS against the clips done into this PNG")
    ap.add_argument("--compare", type=Path, nargs="+", default=[],
                    help="with --plot: saved --json results drawn too")
    args = ap.parse_args(argv)
    earlier = [json.loads(p.read_text(encoding="utf-8")) for p in args.compare]
    if earlier and args.plot and args.clips is None:
        plot(earlier, args.plot)
        return 0
    args.clips = 500 if args.clips is None else args.clips
    work = args.work or Path(tempfile.mkdtemp(prefix="stage1_load-"))
    work.mkdir(parents=True, exist_ok=True)
    unique = args.unique or args.clips
    meld = build_corpus(args.clips, min(unique, args.clips), work, args.seed)
    res = run_stage(meld, work, args.workers, args.clips, args.interval, args.worker_max_tasks)
    report = analyse(res["samples"], args.clips, res["wall_s"], res["per_pid"], res["main_pid"], res["worker_pids"])
    report.update(workers=args.workers, worker_max_tasks=res["worker_max_tasks"], unique_clips=min(unique, args.clips),
                  statuses=res["summary"]["train"], cpu_count=os.cpu_count())
    print(f"stage 1 load: {args.clips} clips ({report['unique_clips']} rendered), {args.workers} workers "
          f"(worker_max_tasks {report['worker_max_tasks']}: {report['worker_processes_started']} worker processes "
          f"started), at most {report['processes']} processes at once")
    print(f"  wall {report['wall_s']} s, {report['clips_per_s']} clips/s "
          f"({report['clips_per_s_10_to_100']} clips/s from 10% to 100%)")
    print(f"  peak RSS (process tree) {report['peak_rss_mib']} MiB; at 10% {report['rss_mib_at_10pct']}, "
          f"50% {report['rss_mib_at_50pct']}, 100% {report['rss_mib_at_100pct']} MiB; "
          f"slope {report['rss_slope_mib_per_100_clips']} MiB per 100 clips")
    print(f"  median RSS over each 10% of the clips: {report['rss_mib_median_by_decile']} MiB")
    for role, (a, b, c) in report["rss_mib_by_process_10_50_100pct"].items():
        print(f"    {role}: {a} -> {b} -> {c} MiB (10% -> 50% -> 100%)")
    print(f"  statuses {report['statuses']}; work folder {work}")
    if args.json:
        args.json.write_text(json.dumps({**report, "samples": res["samples"]}, indent=1) + "\n")
    if args.plot:
        plot([*earlier, {**report, "samples": res["samples"]}], args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
