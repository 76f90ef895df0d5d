"""``facialmmt VERB``: the one command (stage2_mer.cli) - help for every verb, unknown verbs, dispatch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stage2_mer import cli

# Options each verb's --help must show: its own, so a verb wired to the wrong module fails.
OWN_OPTIONS = {
    "doctor": ["--params", "--json"],
    "demo": ["--params", "--out", "--no-progress"],
    "prepare": ["--params", "--out", "--summary"],
    "faces": ["--out", "--speaker", "--reference", "--preview"],
    "extract-faces": ["--utterances", "--meld-root", "--pictures"],
    "finetune-asd": ["--truth", "--arch", "--init", "--val-splits"],
    "features": ["--modality", "--faces", "--meld-root"],
    "import": ["--src", "--faces-out", "--trust-pickle", "--rewrite-prefix"],
    "train": ["--utterances", "--affwild2", "--metrics"],
    "evaluate": ["--checkpoint", "--utterances", "--out"],
    "predict": ["--text", "--checkpoint", "--context", "--format"],
    "report": ["--dvc-yaml"],
}


def test_every_verb_is_covered_here() -> None:
    # a verb added to the table without a help check here fails
    assert set(OWN_OPTIONS) == set(cli.VERBS)
    assert {"faces", "predict", "doctor", "import", "finetune-asd", "features", "demo"} <= set(cli.VERBS)


def test_top_level_help_lists_every_verb_with_one_line(capsys) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, verb in cli.VERBS.items():
        lines = [ln for ln in out.splitlines() if ln.split()[:1] == [name]]
        assert len(lines) == 1, name
        assert verb.summary in lines[0]
    assert cli.main([]) == 0  # no verb: the same list
    assert "verbs:" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(OWN_OPTIONS))
def test_verb_help_exits_0_and_shows_its_own_options(name: str, capsys) -> None:
    assert cli.main([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"facialmmt {name}" in out  # the usage line names the verb, not an old script name
    for option in OWN_OPTIONS[name]:
        assert option in out, (name, option)


def test_help_verb_is_verb_help(capsys) -> None:
    assert cli.main(["help", "import"]) == 0
    assert "--trust-pickle" in capsys.readouterr().out


def test_unknown_verb_exits_2_with_a_clear_message(capsys) -> None:
    assert cli.main(["extract-face", "--out", "x"]) == 2
    err = capsys.readouterr().err
    assert "unknown verb 'extract-face'" in err and "did you mean 'extract-faces'" in err
    assert "faces" in err and "predict" in err  # the verb list follows
    assert cli.main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "unknown verb 'frobnicate'" in err and "did you mean" not in err


def test_bad_arguments_exit_2(capsys) -> None:
    assert cli.main(["faces"]) == 2  # videos and --out are required
    assert "--out" in capsys.readouterr().err


def test_underscore_spelling_of_a_verb_works(capsys) -> None:
    assert cli.main(["finetune_asd", "--help"]) == 0
    assert "--truth" in capsys.readouterr().out


def test_dispatch_passes_the_arguments_through(tmp_path: Path, monkeypatch, capsys) -> None:
    # `report` on a tiny dvc.yaml: the verb's own argument reaches it and it runs
    dvc_yaml = tmp_path / "dvc.yaml"
    dvc_yaml.write_text("stages:\n  only:\n    cmd: 'true'\n    outs:\n      - never/made\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["report", "--dvc-yaml", str(dvc_yaml)]) == 0
    out = capsys.readouterr().out
    assert "[only]" in out and "never/made" in out and "not produced yet" in out


def test_stage1_verbs_do_not_import_stage2_modules(tmp_path: Path) -> None:
    # the dispatcher lives in stage2_mer, but a stage-1 verb loads no stage-2 code beyond it
    code = ("import sys; from stage2_mer import cli; rc = cli.main(['faces', '--help']); "
            "extra = sorted(m for m in sys.modules if m.startswith('stage2_mer') and m not in "
            "('stage2_mer', 'stage2_mer.cli')); print('EXTRA', extra); sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                       env=_env())
    assert r.returncode == 0, r.stderr
    assert "EXTRA []" in r.stdout


def _env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env
