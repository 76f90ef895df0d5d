"""Safe outputs (issue 17, item 4): the run marker is written only after another run's outputs are
gone; a stage never empties a folder that is not its own; the confusion matrix is written through
temp-and-rename."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from stage1_face_extraction.common.runstate import (
    MARKER,
    OWNER,
    ForeignOutputError,
    RunState,
    check_own_output,
    claim_output,
    remove,
)

# ------------------------------------------------------------------------------------------------
# the marker comes last


def test_a_kill_while_deleting_the_old_outputs_is_not_a_resumable_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    state = RunState(out, "old")
    state.begin()
    (out / "split").mkdir()
    (out / "split" / "manifest.jsonl").write_text("{}\n")  # looks finished
    (out / "split" / "shard-0.tar").write_bytes(b"x")

    class Killed(Exception):
        pass

    def killed_half_way(how: str) -> None:
        assert how == "changed"
        (out / "split" / "shard-0.tar").unlink()  # part of the deletion happened ...
        raise Killed  # ... then the kill

    with pytest.raises(Killed):
        RunState(out, "new").begin(killed_half_way)
    # the marker still names the OLD run: the rerun with the new inputs sees "changed" and deletes
    # again, instead of resuming the half-deleted folder as its own
    assert json.loads((out / MARKER).read_text())["fingerprint"] == "old"
    seen = []
    assert RunState(out, "new").begin(lambda how: seen.append(how) or remove([out / "split"])) == "changed"
    assert seen == ["changed"] and not (out / "split").exists()
    assert json.loads((out / MARKER).read_text())["fingerprint"] == "new"


def test_begin_writes_the_marker_after_clear(tmp_path: Path) -> None:
    out = tmp_path / "out"
    order = []
    RunState(out, "fp", stage="s").begin(lambda how: order.append(("clear", (out / MARKER).exists())))
    assert order == [("clear", False)]
    assert (out / MARKER).is_file() and json.loads((out / OWNER).read_text()) == {"stage": "s"}


# ------------------------------------------------------------------------------------------------
# a stage empties only its own folder


def test_check_own_output_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "data" / "mine").mkdir(parents=True)
    monkeypatch.chdir(repo)
    for bad, why in ((".", "current folder"), ("..", "above it"), (str(repo), "current folder")):
        with pytest.raises(ForeignOutputError, match=why):
            check_own_output(bad, "features")
    other = tmp_path / "checkout"
    (other / ".dvc").mkdir(parents=True)
    with pytest.raises(ForeignOutputError, match=r"holds \.dvc"):
        check_own_output(other, "features")
    check_own_output(repo / "data" / "absent", "features")  # nothing there: fine
    check_own_output(repo / "data" / "mine", "features")  # empty: fine
    (repo / "data" / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(ForeignOutputError, match=f"no {OWNER}"):
        check_own_output(repo / "data" / "mine", "features")
    check_own_output(repo / "data" / "mine", "features", legacy=lambda d: True)  # the stage's own old layout
    claim_output(repo / "data" / "mine", "make_affwild2")
    with pytest.raises(ForeignOutputError, match="output of 'make_affwild2'"):
        check_own_output(repo / "data" / "mine", "features")
    check_own_output(repo / "data" / "mine", "make_affwild2")


def _visual_params(tmp_path: Path, repo_root: Path) -> Path:
    p = yaml.safe_load((repo_root / "params.yaml").read_text(encoding="utf-8"))
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(p, sort_keys=False), encoding="utf-8")
    return path


def test_features_refuses_to_empty_a_repository_or_a_foreign_folder(tmp_path: Path, repo_root: Path,
                                                                     monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    from stage2_mer.stages import features

    params = _visual_params(tmp_path, repo_root)
    faces = tmp_path / "faces"
    faces.mkdir()
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "precious.txt").write_text("keep me")
    monkeypatch.chdir(repo)

    def run(out: str) -> int:
        return features.main(["--params", str(params), "--modality", "visual", "--faces", str(faces), "--out", out])

    with caplog.at_level("ERROR"):
        assert run(".") == 2  # `--out .`: the repository root
    assert "refusing to empty" in caplog.text
    assert (repo / "precious.txt").read_text() == "keep me" and (repo / ".git").is_dir()
    assert not (repo / MARKER).exists() and not (repo / OWNER).exists()
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"jpeg")
    assert run(str(foreign)) == 2
    assert (foreign / "holiday.jpg").read_bytes() == b"jpeg"
    # its own folder (ownership file from an earlier run) and an old-layout one are emptied and rerun
    own = tmp_path / "feats"
    assert run(str(own)) == 0 and (own / OWNER).is_file() and not (own / MARKER).exists()
    (own / "inception_resnet_v1" / "stale").mkdir(parents=True)
    assert run(str(own)) == 0 and not (own / "inception_resnet_v1" / "stale").exists()
    (own / OWNER).unlink()  # written before the ownership file existed: <extractor>/ folders only
    assert run(str(own)) == 0 and (own / OWNER).is_file()


def test_make_affwild2_refuses_a_foreign_out(tmp_path: Path, repo_root: Path, monkeypatch: pytest.MonkeyPatch,
                                             caplog) -> None:
    from stage1_face_extraction import meld, store
    from stage2_mer.stages import make_affwild2

    table = pd.DataFrame({"split": ["train"], "utt_id": ["dia0_utt0"], "label": [1]})
    monkeypatch.setattr(meld, "read_utterance_table", lambda path: table)

    class Reader:
        def __init__(self, root) -> None:
            pass

        def read(self, utt_id: str) -> np.ndarray:
            return np.full((3, 16, 16, 3), 100, np.uint8)

    monkeypatch.setattr(store, "FaceShardReader", Reader)
    params = _visual_params(tmp_path, repo_root)

    def run(out: Path) -> int:
        return make_affwild2.main(["--params", str(params), "--utterances", "t.parquet", "--faces", "f",
                                   "--out", str(out)])

    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter1.tex").write_text("keep")
    with caplog.at_level("ERROR"):
        assert run(foreign) == 2
    assert "refusing to empty" in caplog.text and (foreign / "chapter1.tex").read_text() == "keep"
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    assert run(repo) == 2 and (repo / ".git").is_dir()
    out = tmp_path / "affwild2"
    assert run(out) == 0 and (out / "cropped_aligned").is_dir() and (out / OWNER).is_file()
    assert run(out) == 0  # its own: rewritten
    (out / OWNER).unlink()
    assert run(out) == 0  # the old layout (cropped_aligned/ + annotations) is recognised
    # temp-and-rename: a run that dies while writing leaves the previous output whole
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    import stage2_mer.fer as fer

    def dies(folder, *a, **k):
        (Path(folder) / "cropped_aligned").mkdir(parents=True)
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(fer, "write_demo_affwild2", dies)
    with pytest.raises(KeyboardInterrupt):
        run(out)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before and (out / OWNER).is_file()
    monkeypatch.undo()
    monkeypatch.setattr(meld, "read_utterance_table", lambda path: table)
    monkeypatch.setattr(store, "FaceShardReader", Reader)
    assert run(out) == 0 and not list(tmp_path.glob(".affwild2.tmp-*"))  # the next run clears the leftover


# ------------------------------------------------------------------------------------------------
# confusion.png: temp-and-rename


def test_confusion_png_is_written_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stage2_mer.train import plot_confusion

    path = tmp_path / "eval" / "confusion.png"
    cm = np.eye(7, dtype=int) * 3
    plot_confusion(cm, path, title="first")
    before = path.read_bytes()
    assert before[:8] == b"\x89PNG\r\n\x1a\n"

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError):
        plot_confusion(cm + 1, path, title="second")
    monkeypatch.undo()
    assert path.read_bytes() == before, "a failed write must leave the old picture whole"
    assert sorted(p.name for p in path.parent.iterdir()) == ["confusion.png"], "no temp file left"


def test_make_demo_refuses_a_foreign_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    """make_demo replaces --out whole: only a folder that holds a demo corpus (truth.json) or nothing."""
    from stage1_face_extraction.stages import make_demo

    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "params.yaml").write_text("demo: {}\n")
    monkeypatch.chdir(repo)
    with caplog.at_level("ERROR"):
        assert make_demo.main(["--params", "params.yaml", "--out", ".", "--no-progress"]) == 2
    assert "refusing to empty" in caplog.text and (repo / ".git").is_dir()
    mine = repo / "notes"
    mine.mkdir()
    (mine / "todo.txt").write_text("keep")
    assert make_demo.main(["--params", "params.yaml", "--out", "notes", "--no-progress"]) == 2
    assert (mine / "todo.txt").read_text() == "keep"
