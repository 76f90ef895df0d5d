"""Untrusted files (issue 8, item 4): a static scan of the packages for unsafe loaders and shells,
and names read from files (CSV rows, utterance tables, shard and feature indexes) checked before
they become paths.

The scan parses every module of ``stage1_face_extraction`` and ``stage2_mer`` (``ast``, so comments
and strings never count) and fails on: ``pickle.load(s)`` / ``Unpickler`` / ``pandas.read_pickle`` /
``joblib`` / ``dill`` / ``marshal`` loads, ``torch.load`` without ``weights_only=True``,
``np.load`` without ``allow_pickle=False``, ``shell=True``, ``os.system`` / ``os.popen``,
``yaml.load`` / ``unsafe_load``, builtin ``eval`` / ``exec``, ``trust_remote_code=True``,
``torch.jit.load`` and ``tarfile.extractall``. The few allowed uses are listed in ``ALLOWED`` with
their reason; an allowed use that disappears fails too, so the list cannot rot.
"""

from __future__ import annotations

import ast
import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stage1_face_extraction.meld import MeldFormatError, check_table_names, read_utterance_table
from stage1_face_extraction.store import FaceShardReader, FaceShardWriter
from stage2_mer.features.store import FeatureReader, FeatureWriter

PACKAGES = ("stage1_face_extraction", "stage2_mer")

#: (path relative to the repo, rule) -> why it is acceptable there
ALLOWED: dict[tuple[str, str], str] = {
    ("stage2_mer/features/importer.py", "pickle"):
        "the explicit FacialMMT importer: only with --trust-pickle, through an allow-list unpickler "
        "(numpy arrays and builtin containers)",
    ("stage1_face_extraction/asd/av_sync.py", "torch.jit.load"):
        "silero-vad's TorchScript model from the installed silero-vad wheel, never a user file",
}


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a Name/Attribute chain, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _kw(call: ast.Call, name: str):
    """The constant value of keyword ``name`` (``...`` when absent, None when not a constant)."""
    for k in call.keywords:
        if k.arg == name:
            return k.value.value if isinstance(k.value, ast.Constant) else None
    return ...


class _Scanner(ast.NodeVisitor):
    def __init__(self) -> None:
        self.aliases: dict[str, str] = {}  # local name -> module or module.attr it stands for
        self.hits: list[tuple[int, str, str]] = []  # (line, rule, text)

    def _hit(self, node: ast.AST, rule: str, text: str) -> None:
        self.hits.append((node.lineno, rule, text))

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            self.aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
            if a.name in ("dill", "joblib", "marshal", "shelve", "cPickle", "_pickle"):
                self._hit(node, "pickle", f"import {a.name}")
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for a in node.names:
            full = f"{node.module}.{a.name}"
            self.aliases[a.asname or a.name] = full
            if node.module in ("pickle", "_pickle", "dill", "joblib", "marshal") and a.name in (
                "load", "loads", "Unpickler", "_Unpickler"
            ):
                self._hit(node, "pickle", f"from {node.module} import {a.name}")
            if node.module in ("os",) and a.name in ("system", "popen"):
                self._hit(node, "shell", f"from os import {a.name}")
        self.generic_visit(node)

    def _resolve(self, dotted: str) -> str:
        head, _, rest = dotted.partition(".")
        base = self.aliases.get(head, head)
        return f"{base}.{rest}" if rest else base

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for b in node.bases:
            d = _dotted(b)
            if d and self._resolve(d) in ("pickle.Unpickler", "pickle._Unpickler", "_pickle.Unpickler"):
                self._hit(node, "pickle", f"class {node.name}({d})")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        d = _dotted(node.func)
        name = self._resolve(d) if d else None
        if name:
            if name in ("pickle.load", "pickle.loads", "pickle.Unpickler", "_pickle.loads", "dill.load",
                        "dill.loads", "joblib.load", "marshal.load", "marshal.loads", "shelve.open") or (
                name.endswith("read_pickle")
            ):
                self._hit(node, "pickle", name)
            if name == "torch.load" and _kw(node, "weights_only") is not True:
                self._hit(node, "torch.load", "torch.load without weights_only=True")
            if name in ("numpy.load", "np.load") and _kw(node, "allow_pickle") is not False:
                self._hit(node, "numpy.load", "np.load without allow_pickle=False")
            if name in ("os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput"):
                self._hit(node, "shell", name)
            if name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load", "yaml.load_all"):
                self._hit(node, "yaml", name)
            if name in ("eval", "exec", "builtins.eval", "builtins.exec"):
                self._hit(node, "eval", name)
            if name == "torch.jit.load":
                self._hit(node, "torch.jit.load", name)
        if isinstance(node.func, ast.Attribute) and node.func.attr == "extractall":  # archive members name paths
            self._hit(node, "extract", "extractall")
        if _kw(node, "shell") not in (..., False):
            self._hit(node, "shell", "shell=True (or not a literal False)")
        if _kw(node, "trust_remote_code") not in (..., False):
            self._hit(node, "remote_code", "trust_remote_code not False")
        self.generic_visit(node)


def scan_source(source: str) -> list[tuple[int, str, str]]:
    sc = _Scanner()
    sc.visit(ast.parse(source))
    return sc.hits


def scan_packages(repo: Path) -> dict[tuple[str, str], list[str]]:
    """``{(relative path, rule): ["line: text", ...]}`` over the packages."""
    found: dict[tuple[str, str], list[str]] = {}
    for pkg in PACKAGES:
        for path in sorted((repo / pkg).rglob("*.py")):
            rel = path.relative_to(repo).as_posix()
            for line, rule, text in scan_source(path.read_text(encoding="utf-8")):
                found.setdefault((rel, rule), []).append(f"{line}: {text}")
    return found


# ------------------------------------------------------------------------------------------------
# the scan


def test_packages_have_no_unsafe_loaders_or_shells(repo_root: Path) -> None:
    found = scan_packages(repo_root)
    bad = {f"{path} [{rule}]": lines for (path, rule), lines in found.items() if (path, rule) not in ALLOWED}
    assert not bad, "unsafe calls (fix them, or add a justified entry to ALLOWED):\n" + json.dumps(bad, indent=1)
    stale = [k for k in ALLOWED if k not in found]
    assert not stale, f"ALLOWED entries that no longer match anything (remove them): {stale}"


@pytest.mark.parametrize(
    ("snippet", "rule"),
    [
        ("import pickle\npickle.load(open('x', 'rb'))", "pickle"),
        ("import pickle as p\np.loads(b'')", "pickle"),
        ("from pickle import loads\nloads(b'')", "pickle"),
        ("import pickle\nclass U(pickle.Unpickler): pass", "pickle"),
        ("import pandas as pd\npd.read_pickle('x')", "pickle"),
        ("import joblib\njoblib.load('x')", "pickle"),
        ("import torch\ntorch.load('x')", "torch.load"),
        ("import torch\ntorch.load('x', weights_only=False)", "torch.load"),
        ("import torch as t\nt.load('x', map_location='cpu')", "torch.load"),
        ("import numpy as np\nnp.load('x.npy')", "numpy.load"),
        ("import numpy\nnumpy.load('x.npz', allow_pickle=True)", "numpy.load"),
        ("import subprocess\nsubprocess.run('ls', shell=True)", "shell"),
        ("import subprocess\nsubprocess.Popen(cmd, shell=flag)", "shell"),
        ("import os\nos.system('ls')", "shell"),
        ("import yaml\nyaml.load(s)", "yaml"),
        ("eval('1+1')", "eval"),
        ("from transformers import AutoModel\nAutoModel.from_pretrained(p, trust_remote_code=True)", "remote_code"),
        ("import tarfile\ntarfile.open('x').extractall('.')", "extract"),
    ],
)
def test_scanner_catches(snippet: str, rule: str) -> None:
    """The scan can fail: each unsafe pattern is reported under its rule."""
    assert rule in {r for _, r, _ in scan_source(textwrap.dedent(snippet))}


@pytest.mark.parametrize(
    "snippet",
    [
        "import torch\ntorch.load('x', map_location='cpu', weights_only=True)",
        "import numpy as np\nnp.load('x.npy', allow_pickle=False)",
        "import subprocess\nsubprocess.run(['ls'], check=True)",
        "import yaml\nyaml.safe_load(s)",
        "model.eval()",
        "import pickle\ndata = pickle.dumps(obj)",
        "# pickle.load(fh) in a comment\ns = 'torch.load(x)'",
    ],
)
def test_scanner_passes_safe_code(snippet: str) -> None:
    assert scan_source(snippet) == []


# ------------------------------------------------------------------------------------------------
# names from files, checked before they become paths


def _table(**change) -> pd.DataFrame:
    row = {"split": "train", "sr_no": 1, "dialogue_id": 0, "utterance_id": 0, "utt_id": "dia0_utt0",
           "speaker": "Joey", "text": "Hi", "emotion": "joy", "label": 4, "sentiment": "positive", "season": 1,
           "episode": 1, "start_s": 0.0, "end_s": 1.0, "clip": "train_splits/dia0_utt0.mp4", "clip_exists": True}
    return pd.DataFrame([row, {**row, "utterance_id": 1, "utt_id": "dia0_utt1", "clip": "train_splits/dia0_utt1.mp4",
                               **change}])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"utt_id": "../../evil"}, r"row 1: utt_id '\.\./\.\./evil' is not a plain name"),
        ({"utt_id": ".."}, r"row 1: utt_id '\.\.' is not a plain name"),
        ({"utt_id": "dia0/utt1"}, r"row 1: utt_id"),
        ({"split": "../train"}, r"row 1: split '\.\./train' is not one of train, dev, test"),
        ({"clip": "../../../etc/passwd"}, r"row 1: clip '\.\./\.\./\.\./etc/passwd' is not a relative path"),
        ({"clip": "/etc/passwd"}, r"row 1: clip '/etc/passwd'"),
        ({"clip": "train_splits\\..\\..\\x.mp4"}, r"row 1: clip"),
    ],
)
def test_utterance_table_names_are_checked(tmp_path: Path, change: dict, message: str) -> None:
    path = tmp_path / "utterances.parquet"
    _table(**change).to_parquet(path, index=False)
    with pytest.raises(MeldFormatError, match=rf"utterances\.parquet: {message}"):
        read_utterance_table(path)


def test_speaker_names_never_become_paths(tmp_path: Path) -> None:
    """Speaker names are free text (the identity step compares them, never joins them to a path):
    kept verbatim through the table, while the same string where a name becomes a path is refused."""
    evil, shell = "../../../../tmp/evil", "../../x; rm -rf /"
    table = _table(speaker=evil, text=shell)
    check_table_names(table, "t")  # free text: no error
    path = tmp_path / "utterances.parquet"
    table.to_parquet(path, index=False)
    back = read_utterance_table(path)
    row = back[back["utt_id"] == "dia0_utt1"].iloc[0]
    assert (row["speaker"], row["text"], row["clip"]) == (evil, shell, "train_splits/dia0_utt1.mp4")
    # the check is live: the very same string as an utterance id (a file name) or a clip path fails
    with pytest.raises(MeldFormatError, match="utt_id"):
        check_table_names(_table(utt_id=evil), "t")
    with pytest.raises(MeldFormatError, match="clip"):
        check_table_names(_table(clip=evil + ".mp4"), "t")


def test_face_index_with_path_names_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "faces"
    with FaceShardWriter(root, utts_per_shard=2) as w:
        w.add("dia0_utt0", np.zeros((1, 16, 16, 3), np.uint8))
    good = json.loads((root / "index.jsonl").read_text())
    (tmp_path / "secret.tar").write_bytes(b"\0" * 2048)
    for bad, message in (
        ({**good, "shard": "../secret.tar"}, r"index\.jsonl:1: shard must be a file name"),
        ({**good, "utt_id": "../x"}, r"index\.jsonl:1: utt_id must match"),
        ({**good, "offsets": ["0"]}, r"index\.jsonl:1: n, offsets and sizes"),
    ):
        (root / "index.jsonl").write_text(json.dumps(bad) + "\n")
        with pytest.raises(ValueError, match=message):
            FaceShardReader(root)
        with pytest.raises(ValueError, match=message):
            FaceShardWriter(root)  # a resumed writer reads the same index
    (root / "index.jsonl").write_text("{not json\n")
    with pytest.raises(ValueError, match=r"index\.jsonl:1: bad JSON"):
        FaceShardReader(root)


def test_feature_index_with_path_names_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "feats"
    with FeatureWriter(root, dim=4) as w:
        w.add("dia0_utt0", np.ones((3, 4), np.float32))
    good = json.loads((root / "index.jsonl").read_text())
    for bad, message in (
        ({**good, "shard": "../../model.safetensors"}, r"index\.jsonl:1: shard must be a file name"),
        ({**good, "utt_id": "/abs"}, r"index\.jsonl:1: utt_id must match"),
        ({**good, "row": -1}, r"index\.jsonl:1: row must be an integer >= 0"),
    ):
        (root / "index.jsonl").write_text(json.dumps(bad) + "\n")
        with pytest.raises(ValueError, match=message):
            FeatureReader(root)
    (root / "index.jsonl").write_text(json.dumps({**good, "length": 7}) + "\n")  # more rows than the shard
    with pytest.raises(ValueError, match=r"shard-00000\.safetensors: dia0_utt0 needs rows 0\.\.6, the shard has 3"):
        FeatureReader(root).read("dia0_utt0")
