"""Strict config loading: unknown keys fail loudly, nested sections are typed."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from stage1_face_extraction.common.config import ConfigError, from_dict, load_section


@dataclass
class Inner:
    a: int = 1
    b: str = "x"


@dataclass
class Outer:
    n: int = 0
    inner: Inner = field(default_factory=Inner)
    maybe: Inner | None = None


def test_nested_and_defaults():
    cfg = from_dict(Outer, {"n": 3, "inner": {"b": "y"}, "maybe": {"a": 5}}, "sec")
    assert cfg.n == 3 and cfg.inner == Inner(1, "y") and cfg.maybe == Inner(5, "x")


def test_unknown_key_names_dotted_path():
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) sec\.inner\.c; valid keys for sec\.inner: a, b"):
        from_dict(Outer, {"inner": {"c": 1}}, "sec")


def test_missing_section(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("data:\n  meld_root: x\n")
    with pytest.raises(ConfigError, match="no section 'demo'"):
        load_section(p, "demo", Outer)


def test_repo_params_sections_are_all_valid(repo_root):
    """Every section of the real params.yaml loads into its dataclass (typos fail here)."""
    from stage1_face_extraction.stages import param_sections

    for section, cls in param_sections().items():
        load_section(repo_root / "params.yaml", section, cls)


# ------------------------------------------------------------------------------------------------
# runner knobs: params.yaml's `runtime` section (issue 17)


def _params_file(tmp_path, repo_root, edit):
    import yaml

    p = yaml.safe_load((repo_root / "params.yaml").read_text(encoding="utf-8"))
    edit(p)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(p, sort_keys=False), encoding="utf-8")
    return path


def test_runtime_knobs_are_merged_into_their_section(tmp_path, repo_root):
    from stage1_face_extraction.demo.generate import DemoConfig
    from stage1_face_extraction.section import Stage1Config
    from stage2_mer.features.extract import FeatureStageConfig

    def edit(p):
        p["runtime"]["stage1"].update(workers=7, worker_max_tasks=3, executor="ray", ray={"actors": 5})
        p["runtime"]["demo"]["workers"] = 4
        p["runtime"]["features"]["audio"]["workers"] = 0

    path = _params_file(tmp_path, repo_root, edit)
    cfg = load_section(path, "stage1", Stage1Config)
    assert (cfg.workers, cfg.worker_max_tasks, cfg.executor, cfg.ray.actors) == (7, 3, "ray", 5)
    assert load_section(path, "demo", DemoConfig).workers == 4
    assert load_section(path, "features.audio", FeatureStageConfig).workers == 0
    assert load_section(path, "features.visual", FeatureStageConfig).workers == 1  # untouched


@pytest.mark.parametrize("section, key", [("stage1", "workers"), ("stage1", "worker_max_tasks"), ("stage1", "ray"),
                                          ("demo", "workers"), ("features.visual", "workers")])
def test_a_runner_knob_in_its_section_fails_and_names_runtime(tmp_path, repo_root, section, key):
    from stage1_face_extraction.stages import param_sections as s1
    from stage2_mer.stages import param_sections as s2

    def edit(p):
        node = p
        for part in section.split("."):
            node = node[part]
        node[key] = {} if key == "ray" else 1

    path = _params_file(tmp_path, repo_root, edit)
    with pytest.raises(ConfigError, match=rf"{section}\.{key}.*runtime\.{section}\.{key}"):
        load_section(path, section, {**s1(), **s2()}[section])


@pytest.mark.parametrize("edit, match", [
    (lambda p: p["runtime"]["stage1"].update(wrokers=2), r"runtime\.stage1\.wrokers.*valid keys.*workers"),
    (lambda p: p["runtime"].update(stage2={"workers": 1}), r"runtime\.stage2.*valid keys.*stage1"),
    (lambda p: p["runtime"]["features"].update(text={"workers": 1}), r"runtime\.features\.text"),
    (lambda p: p["runtime"]["stage1"]["ray"].update(nodes=3), r"ray.*nodes"),
])
def test_unknown_runtime_keys_fail_loudly(tmp_path, repo_root, edit, match):
    from stage1_face_extraction.section import Stage1Config

    path = _params_file(tmp_path, repo_root, edit)
    with pytest.raises(ConfigError, match=match):
        load_section(path, "stage1", Stage1Config)


def test_no_dvc_stage_hashes_the_runner_knobs(repo_root):
    """dvc.yaml's params lists never name `runtime`, and the sections they do name hold no runner knob
    (so `dvc status` cannot see a worker-count change: test_dvc_pipeline checks that on a real run)."""
    import yaml

    from stage1_face_extraction.common.config import RUNTIME_KEYS

    spec = yaml.safe_load((repo_root / "dvc.yaml").read_text(encoding="utf-8"))
    params = yaml.safe_load((repo_root / "params.yaml").read_text(encoding="utf-8"))
    listed = []
    for stage in spec["stages"].values():
        body = stage.get("do", stage)
        for entry in body.get("params", []):
            listed.extend(entry if isinstance(entry, dict) else [entry])
    assert listed and not [k for k in listed if str(k).split(".")[0] == "runtime"], listed
    for section, keys in RUNTIME_KEYS.items():
        node = params
        for part in section.split("."):
            node = node[part]
        assert not set(node) & set(keys), (section, set(node) & set(keys))
        rt = params["runtime"]
        for part in section.split("."):
            rt = rt[part]
        assert set(rt) <= set(keys)


# ------------------------------------------------------------------------------------------------
# no key is accepted and ignored (issue 18): the selection's frame cap is stage1.max_frames only


@pytest.mark.parametrize("value", [40, 160])
def test_select_max_frames_fails_and_names_stage1_max_frames(tmp_path, repo_root, value):
    # it used to be accepted and silently overwritten by stage1.max_frames
    from stage1_face_extraction.section import Stage1Config

    path = _params_file(tmp_path, repo_root, lambda p: p["stage1"]["select"].update(max_frames=value))
    with pytest.raises(ConfigError, match=r"stage1\.select\.max_frames .*ignored.*set stage1\.max_frames instead"):
        load_section(path, "stage1", Stage1Config)


def test_stage1_max_frames_caps_the_selection(tmp_path, repo_root):
    from stage1_face_extraction.pipeline import PipelineConfig
    from stage1_face_extraction.section import Stage1Config

    path = _params_file(tmp_path, repo_root, lambda p: p["stage1"].update(max_frames=40))
    cfg = load_section(path, "stage1", Stage1Config)
    assert isinstance(cfg, PipelineConfig) and cfg.max_frames == 40
    assert "max_frames" not in vars(cfg.select)  # one key only: the pipeline passes it to select_speaker
