"""Machine checks: the GPU (name, memory, bf16) against ``train.precision`` and the configured
devices; CPU cores against ``runtime.stage1.workers`` (or the Ray executor); free disk at the
outputs, the DVC cache and the default DVC remote against what the run will write."""

from __future__ import annotations

import configparser
import os
import shutil
from pathlib import Path

from .base import FAIL, OK, WARN, Checkup, fmt_bytes


def check_gpu(doc: Checkup) -> None:
    import torch

    doc.cuda = bool(torch.cuda.is_available())
    train = doc.cfg.get("train")
    if doc.cuda:
        n = torch.cuda.device_count()
        props = torch.cuda.get_device_properties(0)
        free, total = torch.cuda.mem_get_info(0)
        bf16 = bool(torch.cuda.is_bf16_supported())
        doc.facts["gpu"] = {"count": n, "name": props.name, "memory_gb": round(total / 1e9, 1),
                             "free_gb": round(free / 1e9, 1), "bf16": bf16, "cuda": torch.version.cuda}
        doc.add(OK, "gpu", f"{n} x {props.name}, {total / 2**30:.0f} GiB ({free / 2**30:.0f} GiB free), "
                f"bf16 {'yes' if bf16 else 'no'}, CUDA {torch.version.cuda}")
        if train is not None and train.precision == "bf16" and not bf16 and not train.cpu:
            doc.add(FAIL, "train.precision", f"bf16 but {props.name} has no bf16 support",
                    "set train.precision: fp16 (or fp32)")
    else:
        doc.facts["gpu"] = None
        status = OK if doc.is_demo else WARN
        doc.add(status, "gpu", f"no CUDA GPU (torch {torch.__version__}): every stage runs on the CPU",
                "" if doc.is_demo else "run on a machine with a CUDA GPU (see the estimate below)")
    if train is not None and train.precision == "fp16" and (not doc.cuda or train.cpu):
        doc.add(FAIL, "train.precision", "fp16 needs a CUDA GPU" + (" (train.cpu: true)" if train.cpu else ""),
                "set train.precision: fp32 (or bf16)")


def check_cpu(doc: Checkup) -> None:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    mem = _meminfo()
    doc.facts.update(cpu_cores=cores, memory_gb=mem)
    msg = f"{cores} usable cores" + (f", {mem[0]:.0f} GB RAM ({mem[1]:.0f} GB available)" if mem else "")
    stage1 = doc.cfg.get("stage1")
    if stage1 is not None and getattr(stage1, "executor", "local") == "ray":
        import importlib.util

        ray = stage1.ray
        if importlib.util.find_spec("ray") is None:
            doc.add(FAIL, "runtime.stage1.executor", "ray, but Ray is not installed",
                    "pip install 'ray[default]' (docs/scale-out.md), or runtime.stage1.executor: local")
        else:
            doc.add(OK, "runtime.stage1.executor", f"ray: address {ray.address or '$RAY_ADDRESS / this machine'}, "
                    f"actors {ray.actors or 'as many as the cluster holds'}")
        doc.add(OK, "cpu", msg)
    elif stage1 is not None and stage1.workers * stage1.torch_threads > cores:
        doc.add(
            WARN,
            "cpu",
            f"{msg}; runtime.stage1.workers {stage1.workers} x stage1.torch_threads {stage1.torch_threads} "
            "oversubscribes them",
            f"set runtime.stage1.workers: {max(1, cores // max(1, stage1.torch_threads))}",
        )
    else:
        doc.add(OK, "cpu", msg)


def check_disk(doc: Checkup, need: dict[str, float]) -> None:
    """Free space at the outputs, the DVC cache (when it copies files) and the default local DVC
    remote against ``need`` (bytes per output, from the estimate)."""
    total = sum(need.values())
    out = doc.path("data")
    cache_dir, remote = _dvc_places(doc)
    places = [("outputs (data/)", out, total)]
    if cache_dir is not None:
        places.append(("DVC cache", cache_dir, total))
    by_dev: dict[int, list] = {}
    for label, p, n in places:
        anc = existing_ancestor(p)
        by_dev.setdefault(anc.stat().st_dev, []).append((label, p, n, anc))
    detail = ", ".join(f"{k} {fmt_bytes(v)}" for k, v in need.items())
    for group in by_dev.values():
        n = sum(x[2] for x in group)
        free = shutil.disk_usage(group[0][3]).free
        labels = " + ".join(f"{x[0]} {x[1]}" for x in group)
        doc.disk.append({"where": labels, "need_bytes": round(n), "free_bytes": free})
        msg = f"{labels}: ~{fmt_bytes(n)} to write, {fmt_bytes(free)} free ({detail})"
        if free < n:
            doc.add(FAIL, "disk", msg, "free space there, or move the DVC cache (dvc cache dir PATH) / "
                    "use cache.type hardlink or symlink (dvc config cache.type hardlink,symlink)")
        elif free < 1.2 * n:
            doc.add(WARN, "disk", msg + ": less than 20 % to spare", "free some space before the run")
        else:
            doc.add(OK, "disk", msg)
    if remote is not None:
        anc = existing_ancestor(remote)
        free = shutil.disk_usage(anc).free
        doc.disk.append({"where": f"DVC remote {remote}", "need_bytes": round(total), "free_bytes": free})
        status = OK if free >= total else WARN
        doc.add(status, "disk (dvc push)", f"default DVC remote {remote}: `make push` stores ~{fmt_bytes(total)}, "
                f"{fmt_bytes(free)} free", "" if status == OK else "point the default remote elsewhere "
                "(docs/versioning.md)")


def _dvc_places(doc: Checkup) -> tuple[Path | None, Path | None]:
    """(cache folder unless the cache links files instead of copying them, default local remote)."""
    conf = configparser.ConfigParser()
    dvc_dir = doc.root / ".dvc"
    conf.read([dvc_dir / "config", dvc_dir / "config.local"])
    cache_type = conf.get("cache", "type", fallback="reflink,copy")
    cache_dir = Path(conf.get("cache", "dir", fallback="cache"))
    cache = None if cache_type.split(",")[0].strip() in ("hardlink", "symlink") else (
        cache_dir if cache_dir.is_absolute() else dvc_dir / cache_dir)
    name = conf.get("core", "remote", fallback=None)
    remote = None
    if name:
        url = conf.get(f"'remote \"{name}\"'", "url", fallback=None)
        if url and "://" not in url:
            remote = Path(os.path.normpath(dvc_dir / url)) if not os.path.isabs(url) else Path(url)
    return cache, remote


def _meminfo() -> tuple[float, float] | None:
    """(total, available) GB from /proc/meminfo, or None."""
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        return (int(info["MemTotal"].split()[0]) / 1e6, int(info["MemAvailable"].split()[0]) / 1e6)
    except (OSError, KeyError, ValueError):
        return None


def existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
