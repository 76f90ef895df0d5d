"""`dvc repro` end to end on a small demo corpus (16 clips), in a copy of the project under tmp_path.

This is what `make demo` runs (with the full demo size); here the demo section is shrunk so the
whole pipeline that exists today runs in a few minutes. The copy is a git repository, so that
`dvc exp run -S ...` works as it does for users; every test that edits params.yaml restores it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

PACKAGES = ("stage1_face_extraction", "stage2_mer")


def _copy_project(repo: Path, dst: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for pkg in PACKAGES:
        shutil.copytree(repo / pkg, dst / pkg, ignore=ignore)
    for f in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy2(repo / f, dst / f)


GIT_ID = {"GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
          "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid"}


def _env(cwd: Path) -> dict[str, str]:
    return {
        **os.environ, **GIT_ID, "DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(cwd),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # `python` in dvc.yaml
    }


def _dvc(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    dvc = [sys.executable, "-m", "dvc"]
    return subprocess.run(dvc + args, cwd=cwd, env=_env(cwd), capture_output=True, text=True, timeout=1200)


def _git(args: list[str], cwd: Path) -> None:
    r = subprocess.run(["git", *args], cwd=cwd, env=_env(cwd), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"git {args}: {r.stderr}"


class _edited_params:
    """Context manager: apply ``edit(params_dict)`` to params.yaml, restore the bytes afterwards."""

    def __init__(self, root: Path, edit) -> None:
        self.path, self.edit = root / "params.yaml", edit

    def __enter__(self) -> None:
        self.saved = self.path.read_bytes()
        params = yaml.safe_load(self.saved)
        self.edit(params)
        self.path.write_text(yaml.safe_dump(params, sort_keys=False))

    def __exit__(self, *exc) -> None:
        self.path.write_bytes(self.saved)


def _changed_stages(root: Path) -> set[str]:
    r = _dvc(["status", "--json"], root)
    assert r.returncode == 0, r.stderr
    return set(json.loads(r.stdout or "{}"))


@pytest.fixture(scope="module")
def repro_dir(tmp_path_factory, repo_root):
    d = tmp_path_factory.mktemp("dvc_demo")
    _copy_project(repo_root, d)
    params = yaml.safe_load((d / "params.yaml").read_text())
    params["demo"].update(
        dialogues_per_split={"train": 2, "dev": 1, "test": 1}, utterances_min=4, utterances_max=4,
        duration_min_s=2.0, duration_max_s=2.5,
    )
    (d / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (d / ".gitignore").write_text("__pycache__/\n")
    _git(["init", "-q", "-b", "main"], d)
    r = _dvc(["init", "-q"], d)
    assert r.returncode == 0, r.stderr
    _git(["add", "-A"], d)
    _git(["commit", "-q", "-m", "project"], d)
    r = _dvc(["repro"], d)
    assert r.returncode == 0, f"dvc repro failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    _git(["add", "-A"], d)
    _git(["commit", "-q", "-m", "repro"], d)
    return d


def test_repro_produces_every_stage_output(repro_dir):
    spec = yaml.safe_load((repro_dir / "dvc.yaml").read_text())
    for name, stage in spec["stages"].items():
        for out in stage.get("outs", []) + stage.get("metrics", []):
            path = next(iter(out)) if isinstance(out, dict) else out
            assert (repro_dir / path).exists(), f"stage {name} did not produce {path}"
    table = pd.read_parquet(repro_dir / "data/prepared/utterances.parquet")
    assert set(table["split"]) == {"train", "dev", "test"} and len(table) == 16
    assert table["clip_exists"].all()
    summary = json.loads((repro_dir / "data/prepared/summary.json").read_text())
    assert summary["train"]["utterances"] == 8
    faces = json.loads((repro_dir / "data/faces_summary.json").read_text())
    assert sum(v["clips"] for v in faces.values()) == 16
    assert sum(v.get("ok", 0) for v in faces.values()) >= 11


def test_previews_and_the_report(repro_dir):
    from stage1_face_extraction.video import probe

    for split in ("train", "dev", "test"):
        manifest = [json.loads(x) for x in (repro_dir / f"data/faces/{split}/manifest.jsonl").read_text().splitlines()]
        firsts = [r for r in manifest[:4] if r["status"] not in ("missing", "decode_error")]
        assert not (repro_dir / f"data/faces/{split}/previews").exists()  # pictures: their own DVC output
        previews = sorted((repro_dir / f"data/faces_pictures/{split}/previews").glob("*.mp4"))
        assert [p.stem for p in previews] == [r["utt_id"] for r in firsts]
        info = probe(previews[0])
        assert info.n_frames == firsts[0]["n_frames"], (info, firsts[0]["n_frames"])
    r = subprocess.run([sys.executable, "-m", "stage1_face_extraction.stages.report"], cwd=repro_dir,
                       env=_env(repro_dir), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for where in ("data/faces_pictures/train/previews/", "data/faces_pictures/train/sheets/", "data/eval/metrics.json",
                  "data/eval/confusion.png", "dvc plots show"):
        assert where in r.stdout, (where, r.stdout)


class _Pooled:
    """A FeatureReader over the three splits' folders of one feature set."""

    def __init__(self, folder: Path) -> None:
        from stage2_mer.features import FeatureReader

        self.readers = [FeatureReader(folder / s) for s in ("train", "dev", "test")]
        self._reader_of = {u: r for r in self.readers for u in r.utt_ids()}

    def utt_ids(self) -> list[str]:
        return sorted(self._reader_of)

    def read(self, utt: str):
        return self._reader_of[utt].read(utt)


def test_model_overfits_the_16_demo_utterances(repro_dir):
    """The demo's own inputs (its transcript lines through the demo's text encoder, the audio and
    face features the pipeline wrote) and the params' model, all 16 utterances as one train set:
    the trainer must fit them (train accuracy >= 0.95). Dropout off, no FER branch, the pretrained
    text encoder frozen (the new layers do the fitting; keeps the test fast)."""
    import dataclasses

    import torch
    from transformers import AutoTokenizer

    from stage1_face_extraction.common.config import load_section
    from stage1_face_extraction.meld import read_utterance_table
    from stage2_mer.data import DialogueTokenizer, MELDDialogues
    from stage2_mer.model import ModelConfig, create_model
    from stage2_mer.model.facialmmt import resolve_text_encoder
    from stage2_mer.train import TrainConfig, Trainer

    params = repro_dir / "params.yaml"
    mcfg = load_section(params, "model", ModelConfig)
    tcfg = load_section(params, "train", TrainConfig)
    table = read_utterance_table(repro_dir / "data/prepared/utterances.parquet")
    # every split's dialogues as train dialogues (ids kept apart)
    offset = {"train": 0, "dev": 1000, "test": 2000}
    table = table.assign(dialogue_id=[offset[s] + int(d) for s, d in zip(table["split"], table["dialogue_id"])],
                         split="train")
    assert len(table) == 16 and table["label"].nunique() >= 3
    feats = yaml.safe_load(params.read_text())["features"]
    audio = _Pooled(repro_dir / "data/features/audio" / feats["audio"]["name"])
    visual = _Pooled(repro_dir / "data/features/visual" / feats["visual"]["name"])
    mcfg.text_encoder = resolve_text_encoder(mcfg.text_encoder)
    tok = DialogueTokenizer(AutoTokenizer.from_pretrained(mcfg.text_encoder, local_files_only=True),
                            max_tokens=tcfg.max_tokens)
    mcfg = dataclasses.replace(mcfg, fer_dim=0, dropout=0.0, attn_dropout=0.0, cross_dropout=0.0,
                               audio_dim=audio.readers[0].dim, visual_dim=visual.readers[0].dim)
    data = MELDDialogues(table, "train", tokenizer=tok, audio=audio, visual=visual, max_audio=256, max_visual=64)
    tcfg = dataclasses.replace(tcfg, epochs=12, patience=12, batch_dialogues=2, lr=3e-3, warmup=0.05,
                               aux_ratio=0.0, seeds=[], cpu=True)
    torch.manual_seed(tcfg.seed)
    model = create_model(mcfg)
    model.text_encoder.requires_grad_(False)  # the pretrained encoder as is: the new layers must fit (fast)
    trainer = Trainer(model, tcfg, model_config=mcfg.to_dict(), pad_id=tok.pad)
    before = trainer.predict(data)
    trainer.fit(data, data, repro_dir / "overfit_model")
    after = trainer.predict(data)
    assert sorted(after["utt_ids"]) == sorted(table["utt_id"])

    def accuracy(out) -> float:
        return float(np.mean(np.asarray(out["predictions"]) == np.asarray(out["labels"])))

    assert accuracy(after) >= 0.95, (accuracy(after), accuracy(before))


def test_second_repro_is_a_no_op_and_status_clean(repro_dir):
    r = _dvc(["repro"], repro_dir)
    assert r.returncode == 0, r.stderr
    assert "didn't change, skipping" in r.stdout or "is cached" in r.stdout
    assert "Running stage" not in r.stdout
    r = _dvc(["status"], repro_dir)
    assert r.returncode == 0 and "up to date" in r.stdout.lower(), r.stdout


def test_changing_stage1_params_changes_only_extract_faces(repro_dir):
    # (`dvc status` lists the stages whose own inputs changed; features@visual follows once the
    # faces it reads have changed)
    with _edited_params(repro_dir, lambda p: p["stage1"].update(max_frames=40)):
        assert _changed_stages(repro_dir) == {"extract_faces"}
    assert _changed_stages(repro_dir) == set()


def test_runner_knobs_change_no_stage(repro_dir):
    """runtime.* (workers, executor, ray, recycling) is listed by no stage: nothing to re-run."""
    def edit(p):
        p["runtime"]["stage1"].update(workers=1, worker_max_tasks=3, executor="ray")
        p["runtime"]["demo"]["workers"] = 1
        for modality in ("visual", "audio"):
            p["runtime"]["features"][modality]["workers"] = 0

    with _edited_params(repro_dir, edit):
        assert _changed_stages(repro_dir) == set()


def test_editing_code_a_stage_runs_makes_it_stale(repro_dir):
    """stage2_mer/train/metrics.py is run by train and evaluate (evaluate listed only its own script
    before issue 17); stage1_face_extraction/preview.py by extract_faces."""
    for rel, expected in (("stage2_mer/train/metrics.py", {"train", "evaluate"}),
                          ("stage1_face_extraction/preview.py", {"extract_faces"})):
        path = repro_dir / rel
        saved = path.read_bytes()
        try:
            path.write_bytes(saved + b"\n# an edit\n")
            assert _changed_stages(repro_dir) == expected, rel
        finally:
            path.write_bytes(saved)
    assert _changed_stages(repro_dir) == set()


def test_more_previews_rerun_nothing_downstream(repro_dir):
    """The pictures are their own output (data/faces_pictures): asking for other previews and sheets
    re-runs extract_faces, whose data/faces comes out byte-identical, so no later stage runs."""
    before = _lock_outs(repro_dir)

    def edit(p):
        p["stage1"].update(previews=1, contact_sheets=1)
        p["stage1"]["identity"]["sheets"] = 1

    try:
        with _edited_params(repro_dir, edit):
            assert _changed_stages(repro_dir) == {"extract_faces"}
            r = _dvc(["repro"], repro_dir)
            assert r.returncode == 0, f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
            assert "Running stage 'extract_faces'" in r.stdout
            ran = [line for line in r.stdout.splitlines() if line.startswith("Running stage")]
            assert ran == ["Running stage 'extract_faces':"], ran
            after = _lock_outs(repro_dir)
            assert after["extract_faces"]["data/faces"] == before["extract_faces"]["data/faces"]
            assert after["extract_faces"]["data/faces_pictures"] != before["extract_faces"]["data/faces_pictures"]
            assert len(list((repro_dir / "data/faces_pictures/train/previews").glob("*.mp4"))) == 1
    finally:  # back to the committed state for any later test
        _git(["checkout", "--", "params.yaml", "dvc.lock"], repro_dir)
        r = _dvc(["checkout", "-q", "--force"], repro_dir)
        assert r.returncode == 0, r.stderr
    assert _changed_stages(repro_dir) == set()


def _lock_outs(root: Path) -> dict[str, dict[str, str]]:
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return {name: {o["path"]: o.get("md5") for o in stage.get("outs", [])} for name, stage in lock["stages"].items()}


def test_features_outputs(repro_dir):
    for modality, name, dim in (("visual", "inception_resnet_v1", 512), ("audio", "wav2vec2", 768)):
        summary = json.loads((repro_dir / f"data/features/{modality}_summary.json").read_text())
        assert summary["extractor"] == name and summary["dim"] == dim
        assert sum(s["utterances"] for s in summary["splits"].values()) == 16
        assert summary["mean3std_len"] >= 1
        meta = json.loads((repro_dir / f"data/features/{modality}/{name}/train/meta.json").read_text())
        assert meta["dim"] == dim and meta["dtype"] == "float16"
    audio = json.loads((repro_dir / "data/features/audio_summary.json").read_text())
    assert audio["splits"]["train"]["empty"] == 0 and audio["splits"]["train"]["mean_length"] > 90  # 50 frames/s


def test_train_and_evaluate_outputs(repro_dir):
    import csv

    info = json.loads((repro_dir / "data/model/checkpoint.json").read_text())
    assert info["labels"][0] == "neutral" and info["model"]["modalities"] == "T+A+V" and info["fer"] is not None
    # no machine's path in an output: the same dvc.lock on every checkout (the package spec, not its folder)
    assert info["model"]["text_encoder"].startswith("pkg:"), info["model"]["text_encoder"]

    def strings(x):
        if isinstance(x, dict):
            return [s for v in x.values() for s in strings(v)]
        if isinstance(x, list):
            return [s for v in x for s in strings(v)]
        return [x] if isinstance(x, str) else []

    assert not [s for s in strings(info) if os.path.isabs(s) or str(repro_dir) in s]
    assert (repro_dir / "data/model/model.safetensors").stat().st_size > 1000
    metrics = json.loads((repro_dir / "data/eval/metrics.json").read_text())
    assert {"weighted_f1", "macro_f1", "accuracy", "per_class_f1"} <= set(metrics) and metrics["n"] == 4
    assert len(metrics["per_class_f1"]) == 7
    rows = list(csv.DictReader((repro_dir / "data/eval/predictions.csv").open()))
    assert len(rows) == 4 and all(abs(sum(float(r[k]) for k in r if k.startswith("p_")) - 1) < 1e-3 for r in rows)
    # the metrics are those of the predictions written beside them (recomputed independently)
    from sklearn.metrics import accuracy_score, f1_score

    truth, pred = [r["true"] for r in rows], [r["predicted"] for r in rows]
    assert all(r["predicted"] == max((k for k in r if k.startswith("p_")), key=lambda k: float(r[k]))[2:]
               for r in rows), "predicted must be the most probable class"
    assert metrics["weighted_f1"] == pytest.approx(100 * f1_score(truth, pred, average="weighted", zero_division=0),
                                                   abs=0.01)
    assert metrics["accuracy"] == pytest.approx(100 * accuracy_score(truth, pred), abs=0.01)
    assert (repro_dir / "data/eval/confusion.png").stat().st_size > 1000
    train = json.loads((repro_dir / "data/train_metrics.json").read_text())
    assert "weighted_f1" in train["dev"]
    r = _dvc(["metrics", "show", "--json"], repro_dir)
    assert r.returncode == 0 and "weighted_f1" in r.stdout, r.stderr
    r = _dvc(["plots", "show", "--json"], repro_dir)  # the confusion matrix from predictions.csv
    assert r.returncode == 0 and "data/eval/predictions.csv" in r.stdout and '"predicted"' in r.stdout, r.stderr


def test_swapping_the_visual_extractor_changes_only_the_visual_stage(repro_dir):
    # the visual stage and what depends on it: train and evaluate read data/features/visual/<name>
    with _edited_params(repro_dir, lambda p: p["features"]["visual"].update(name="dlib_resnet")):
        assert _changed_stages(repro_dir) == {"features@visual", "train", "evaluate"}
    with _edited_params(repro_dir, lambda p: p["features"]["audio"].update(dtype="float32")):
        assert _changed_stages(repro_dir) == {"features@audio"}


def test_exp_run_with_fbank_reruns_only_audio(repro_dir):
    r = _dvc(["exp", "run", "-S", "features.audio.name=fbank"], repro_dir)
    assert r.returncode == 0, f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    assert "Running stage 'features@audio'" in r.stdout
    assert "Running stage 'features@visual'" not in r.stdout and "Running stage 'extract_faces'" not in r.stdout
    assert (
        "Running stage 'train'" in r.stdout and "Running stage 'evaluate'" in r.stdout
    )  # they read the audio features
    summary = json.loads((repro_dir / "data/features/audio_summary.json").read_text())
    assert summary["extractor"] == "fbank" and summary["dim"] == 80
    r = _dvc(["exp", "show", "--json"], repro_dir)
    assert r.returncode == 0 and '"fbank"' in r.stdout, r.stdout[-2000:]  # the experiment's params
    # back to the committed state for any later test
    _git(["checkout", "--", "params.yaml", "dvc.lock"], repro_dir)
    r = _dvc(["checkout", "-q"], repro_dir)
    assert r.returncode == 0, r.stderr


@pytest.mark.slow
def test_make_demo_end_to_end(tmp_path, repo_root):
    """What `make demo` runs, with the repository's own params (the full 75-clip demo): every stage
    runs, `dvc status` is clean afterwards, metrics and plots show, a second repro runs nothing."""
    import time

    d = tmp_path / "project"
    d.mkdir()
    _copy_project(repo_root, d)
    (d / ".gitignore").write_text("__pycache__/\n")
    _git(["init", "-q", "-b", "main"], d)
    assert _dvc(["init", "-q"], d).returncode == 0
    _git(["add", "-A"], d)
    _git(["commit", "-q", "-m", "project"], d)
    t0 = time.perf_counter()
    r = _dvc(["repro"], d)
    minutes = (time.perf_counter() - t0) / 60
    assert r.returncode == 0, f"dvc repro failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    print(f"full demo dvc repro: {minutes:.1f} min")
    spec = yaml.safe_load((d / "dvc.yaml").read_text())
    assert all(f"Running stage '{name}'" in r.stdout for name in spec["stages"] if name != "features")
    faces = json.loads((d / "data/faces_summary.json").read_text())
    assert sum(v["clips"] for v in faces.values()) == 75
    metrics = json.loads((d / "data/eval/metrics.json").read_text())
    assert metrics["n"] == sum(1 for _ in (d / "data/eval/predictions.csv").open()) - 1
    r = _dvc(["status"], d)
    assert r.returncode == 0 and "up to date" in r.stdout.lower(), r.stdout
    r = _dvc(["repro"], d)
    assert r.returncode == 0 and "Running stage" not in r.stdout, r.stdout[-2000:]
    r = _dvc(["metrics", "show"], d)
    assert r.returncode == 0 and "weighted_f1" in r.stdout, r.stderr
    r = _dvc(["plots", "show", "--json"], d)
    assert r.returncode == 0 and "data/eval/predictions.csv" in r.stdout, r.stderr
