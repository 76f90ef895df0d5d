"""Import FacialMMT's released preprocessed data into this project's formats.

    python -m stage2_mer.features.importer --src preprocess_data/T+A+V \\
        --out data/features --trust-pickle            # features (reads pickle: needs the flag)
    python -m stage2_mer.features.importer --src preprocess_data/T+A+V \\
        --faces-out data/faces --rewrite-prefix /media/devin/FacSeqs-160 ~/FacSeqs-160   # faces (JSON + JPEG only)

Inputs (the layout of FacialMMT's ``preprocess_data/T+A+V/``; facts from the project's reference
notes, section 2.2), per FacialMMT split ``train`` / ``val`` / ``test``:

``meld_{split}_vision_utt.pkl``
    ``{split: {"vision": (N, Lv, 512), "vision_utt_mask": (N, Lv), "labels": (N,)}}``:
    InceptionResNetV1 embeddings of the speaker's face frames, zero-padded to Lv.
``meld_{split}_audio_utt.pkl``
    ``{split: {"audio": (N, La, 768), "audio_utt_mask": (N, La)}}``: wav2vec2-base-960h frames.
``{split}_utt_profile.json``
    ``{"0": [utt_name, dia_name, dia_index, dia_len, position], ...}``: row ``i`` of both pickles
    is utterance ``utt_name`` (the pickles themselves hold no ids).
``{split}_facseqs_160_paths_final.json``
    ``{"dia{D}_utt{U}": [jpeg path, ...]}``: the speaker's 160x160 face crops, in frame order.

Mapping rules:

- Splits: FacialMMT ``train`` / ``val`` / ``test`` -> this project's ``train`` / ``dev`` / ``test``
  (``--splits`` accepts either name).
- Utterance ids: pickle row ``i`` -> ``utt_profile["i"][0]``; face-list keys are used directly.
  Every id must read ``dia{D}_utt{U}`` (D, U decimal) and is rewritten canonically
  (``dia{int(D)}_utt{int(U)}``, leading zeros dropped); anything else is an error naming the file.
- Features: the rows of utterance ``i`` are ``array[i][mask[i] > 0]`` (padding dropped, order
  kept), written with :class:`~stage2_mer.features.store.FeatureWriter` (``--dtype``, default
  float16; a value beyond float16's range is an error asking for ``--dtype float32``) to
  ``<out>/visual/facialmmt_inception_resnet_v1/<split>/`` and
  ``<out>/audio/facialmmt_wav2vec2/<split>/``, utterances sorted by id. FacialMMT had already cut
  every utterance to Lv / La rows (mean + 3 std of the lengths), so long utterances stay cut;
  ``meta.json`` ``info`` records the source file, the padded width and how many utterances fill it.
  The pickled ``labels`` are not imported (labels come from the MELD CSVs).
- Faces: each listed JPEG is decoded (RGB), resized to ``--face-size`` (default 160) when it is
  another size, re-encoded by :class:`~stage1_face_extraction.store.FaceShardWriter` (JPEG quality
  95: one more lossy generation) into ``<faces-out>/<split>/`` shards + ``index.jsonl``, and
  described in ``manifest.jsonl`` (:func:`~stage1_face_extraction.store.write_manifest`).
  Utterances listed in ``{split}_utt_profile.json`` (when present) but absent from the face list
  get a ``no_face`` record too. FacialMMT's lists are not capped (its loader cut them to Lv), so an
  utterance may have more face crops than imported vision rows.

Manifest records (stage-1 schema) of imported faces, with neutral values where FacialMMT's
release says nothing:

- ``clip``: the MELD clip the faces come from (``train_splits/dia0_utt0.mp4``,
  ``dev_splits_complete/...``, ``output_repeated_splits_test/...``); ``status``: ``ok`` when the
  list has at least one crop, else ``no_face`` (with a ``reason``); ``fps``: null (unknown);
  ``n_frames``: 0 (unknown: the video was not decoded, as in the pipeline's failure records);
  ``tracks``: [] (no track information); extra keys ``source: "facialmmt"`` and
  ``source_split`` (FacialMMT's split name).
- ``frames[k]``: ``frame`` = k (the crop's position in FacialMMT's list: the source frame index
  is not released), ``t``, ``box``, ``det_score``, ``speaking``, ``track`` = null (unknown), and
  ``file`` = the JPEG's base name (provenance).

Pickle safety: unpickling can run arbitrary code, so pickles are read ONLY here and ONLY with
``--trust-pickle`` (without it the command exits with status 2 before reading or writing
anything). Even then :class:`RestrictedUnpickler` resolves only numpy's array, dtype and scalar
reconstruction functions, ``_codecs.encode`` restricted to latin-1 (protocol-2 numpy pickles) and
builtin containers; any other global (``os.system``, ``torch`` tensors, ``builtins.eval``, ...)
raises :class:`pickle.UnpicklingError` before it can be called. The faces need no pickle.

Exit status: 0 done; 1 bad or missing input data (the message names the file); 2 bad arguments,
or pickles requested without ``--trust-pickle``. Outputs that already exist are refused unless
``--overwrite``; a run that fails midway keeps the splits it finished.
"""

from __future__ import annotations

import argparse
import builtins
import codecs
import importlib
import json
import logging
import pickle
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from stage1_face_extraction.meld import DataConfig, clip_name
from stage1_face_extraction.store import INDEX_NAME as FACE_INDEX_NAME
from stage1_face_extraction.store import FaceShardWriter, decode_jpeg, write_manifest

from .registry import PER_FACE_FRAME, Contract
from .store import INDEX_NAME, META_NAME, FeatureWriter

log = logging.getLogger("facialmmt.importer")

__all__ = [
    "SPLIT_MAP",
    "FacialMMTFormatError",
    "RestrictedUnpickler",
    "load_pickle",
    "meld_utt_id",
    "read_utt_profile",
    "read_feature_pickle",
    "read_face_lists",
    "import_features",
    "import_faces",
    "main",
]

#: FacialMMT split name -> this project's split name.
SPLIT_MAP: dict[str, str] = {"train": "train", "val": "dev", "test": "test"}
_SPLIT_ALIASES = {**{k: k for k in SPLIT_MAP}, "dev": "val"}
_UTT_RE = re.compile(r"^dia(\d+)_utt(\d+)$")
FLOAT16_MAX = float(np.finfo(np.float16).max)


class FacialMMTFormatError(ValueError):
    """A FacialMMT file does not have the documented layout (the message names the file)."""


@dataclass(frozen=True)
class _Spec:
    """One pickled modality of the release and where it goes."""

    kind: str  # "vision" | "audio": the file name part and the inner array key
    modality: str  # this project's feature modality folder
    extractor: str  # feature folder name
    model: str  # what FacialMMT says produced the features

    @property
    def mask_key(self) -> str:
        return f"{self.kind}_utt_mask"

    def file(self, split: str) -> str:
        return f"meld_{split}_{self.kind}_utt.pkl"

    def folder(self, out: Path, split: str) -> Path:
        return out / self.modality / self.extractor / SPLIT_MAP[split]

    def contract(self, dim: int) -> Contract:
        if self.modality == "visual":
            return Contract(modality="visual", dim=dim, frame_rate=PER_FACE_FRAME, image_size=(160, 160),
                            mean=(127.5 / 255,) * 3, std=(128.0 / 255,) * 3,
                            normalization="(x - 127.5) / 128 (facenet-pytorch default; not stated by FacialMMT)")
        return Contract(modality="audio", dim=dim, frame_rate=50.0, sample_rate=16000,
                        normalization="wav2vec2 feature extractor (zero mean, unit variance per utterance)")


SPECS: dict[str, _Spec] = {
    "vision": _Spec("vision", "visual", "facialmmt_inception_resnet_v1", "InceptionResNetV1 (facenet-pytorch)"),
    "audio": _Spec("audio", "audio", "facialmmt_wav2vec2", "wav2vec2-base-960h"),
}


# ------------------------------------------------------------------------------------------------
# restricted pickle


def _numpy_attr(sub: str, name: str):
    """``numpy._core.<sub>.<name>`` (numpy 2) or ``numpy.core.<sub>.<name>`` (numpy 1)."""
    try:
        mod = importlib.import_module(f"numpy._core.{sub}")
    except ImportError:  # pragma: no cover - numpy 1.x
        mod = importlib.import_module(f"numpy.core.{sub}")
    return getattr(mod, name)


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as numpy's protocol-2 pickles use it (bytes stored as latin-1 text) only."""
    if encoding.lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r} (only latin-1)")
    return codecs.encode(text, "latin-1")


def _allowed_globals() -> dict[tuple[str, str], object]:
    out: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for pkg in ("numpy.core", "numpy._core"):  # numpy 1.x and 2.x pickles
        out[(f"{pkg}.multiarray", "_reconstruct")] = _numpy_attr("multiarray", "_reconstruct")
        out[(f"{pkg}.multiarray", "scalar")] = _numpy_attr("multiarray", "scalar")
        out[(f"{pkg}.numeric", "_frombuffer")] = _numpy_attr("numeric", "_frombuffer")  # protocol 5
    for name in ("dict", "list", "tuple", "set", "frozenset", "bytearray", "complex"):
        out[("builtins", name)] = getattr(builtins, name)
        out[("__builtin__", name)] = out[("builtins", name)]  # Python-2 pickles
    return out


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can only rebuild numpy arrays / dtypes / scalars and builtin containers.

    ``find_class`` is the only way a pickle reaches a callable; it answers from a fixed allow-list
    (numpy's ``_reconstruct`` / ``scalar`` / ``_frombuffer``, ``numpy.ndarray``, ``numpy.dtype``,
    a latin-1-only ``_codecs.encode``, builtin ``dict``/``list``/``tuple``/``set``/``frozenset``/
    ``bytearray``/``complex``) and raises :class:`pickle.UnpicklingError` for anything else, so
    a pickle naming ``os.system`` fails before the call. Persistent ids are refused (the base
    class raises). This limits what a pickle can do; it is not a reason to load untrusted files.
    """

    _ALLOWED: dict[tuple[str, str], object] | None = None

    def find_class(self, module: str, name: str):
        allowed = type(self)._ALLOWED
        if allowed is None:
            allowed = type(self)._ALLOWED = _allowed_globals()
        try:
            return allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: only numpy arrays/dtypes/scalars and builtin "
                "containers are allowed (restricted unpickler)"
            ) from None


def load_pickle(path: str | Path, *, trust: bool = False):
    """The object pickled in ``path``, via :class:`RestrictedUnpickler`.

    ``trust`` must be True (the caller's explicit consent: unpickling can run code). Errors name
    the file: FileNotFoundError, or FacialMMTFormatError for a refused global / corrupt pickle.
    """
    path = Path(path)
    if not trust:
        raise PermissionError(f"{path}: refusing to unpickle without trust=True (pickle can execute code)")
    if not path.is_file():
        raise FileNotFoundError(f"FacialMMT file not found: {path}")
    log.warning("unpickling %s (trusted by --trust-pickle; restricted to numpy arrays and containers)", path)
    with path.open("rb") as fh:
        try:
            return RestrictedUnpickler(fh).load()
        except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError) as e:
            raise FacialMMTFormatError(f"{path}: cannot unpickle: {e}") from e


# ------------------------------------------------------------------------------------------------
# readers


def meld_utt_id(key: object, where: str | Path) -> str:
    """``dia{D}_utt{U}`` (canonical: no leading zeros) from a FacialMMT key; errors name ``where``."""
    m = _UTT_RE.match(key) if isinstance(key, str) else None
    if m is None:
        raise FacialMMTFormatError(f"{where}: {key!r} is not a MELD utterance id (expected dia{{D}}_utt{{U}}, "
                                   "e.g. dia0_utt3)")
    return clip_name(int(m.group(1)), int(m.group(2)))


def _read_json(path: Path, what: str):
    if not path.is_file():
        raise FileNotFoundError(f"FacialMMT {what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FacialMMTFormatError(f"{path}: not valid JSON ({e})") from e


def read_utt_profile(path: str | Path) -> list[str]:
    """Row ``i`` -> utt id, from ``{split}_utt_profile.json`` (``{"i": [utt_name, ...]}``, i = 0..N-1)."""
    path = Path(path)
    data = _read_json(path, "utterance profile")
    if not isinstance(data, dict):
        raise FacialMMTFormatError(f"{path}: expected a JSON object {{\"0\": [\"dia0_utt0\", ...], ...}}, "
                                   f"got {type(data).__name__}")
    n = len(data)
    if set(data) != {str(i) for i in range(n)}:
        bad = sorted(k for k in data if k not in {str(i) for i in range(n)})[:3]
        raise FacialMMTFormatError(f"{path}: keys must be the row numbers \"0\"..\"{n - 1}\" (found {bad})")
    ids, seen = [], {}
    for i in range(n):
        v = data[str(i)]
        name = v if isinstance(v, str) else (v[0] if isinstance(v, list) and v else None)
        utt = meld_utt_id(name, f"{path} row {i}")
        if utt in seen:
            raise FacialMMTFormatError(f"{path}: {utt} appears twice (rows {seen[utt]} and {i})")
        seen[utt] = i
        ids.append(utt)
    return ids


def read_feature_pickle(
    path: str | Path, split: str, kind: str, *, trust: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """``(features (N, L, D), mask (N, L))`` of ``meld_{split}_{kind}_utt.pkl``.

    Accepts ``{split: {kind: ..., kind_utt_mask: ...}}`` (the release) or the inner dict alone.
    """
    path = Path(path)
    obj = load_pickle(path, trust=trust)
    spec = SPECS[kind]
    if not isinstance(obj, dict):
        raise FacialMMTFormatError(f"{path}: expected a dict {{'{split}': {{'{kind}': ..., '{spec.mask_key}': ...}}}}, "
                                   f"got {type(obj).__name__}")
    inner = obj.get(split, obj) if kind not in obj else obj
    if not isinstance(inner, dict) or kind not in inner or spec.mask_key not in inner:
        keys = sorted(map(str, inner)) if isinstance(inner, dict) else type(inner).__name__
        raise FacialMMTFormatError(
            f"{path}: expected {{'{split}': {{'{kind}': (N, L, D), '{spec.mask_key}': (N, L)}}}}; found keys {keys}"
        )
    feats, mask = inner[kind], inner[spec.mask_key]
    for name, arr, nd in ((kind, feats, 3), (spec.mask_key, mask, 2)):
        if not isinstance(arr, np.ndarray):
            raise FacialMMTFormatError(f"{path}: '{name}' must be a numpy array, got {type(arr).__name__}")
        if arr.ndim != nd or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise FacialMMTFormatError(f"{path}: '{name}' must be a {nd}-d numeric array, got {arr.dtype} "
                                       f"shape {arr.shape}")
    if mask.shape != feats.shape[:2]:
        raise FacialMMTFormatError(f"{path}: '{spec.mask_key}' shape {mask.shape} does not match "
                                   f"'{kind}' shape {feats.shape} (expected {feats.shape[:2]})")
    return feats, mask


def read_face_lists(path: str | Path) -> dict[str, list[str]]:
    """``{utt_id: [jpeg path, ...]}`` from ``{split}_facseqs_160_paths_final.json`` (ids canonical)."""
    path = Path(path)
    data = _read_json(path, "face list")
    if not isinstance(data, dict):
        raise FacialMMTFormatError(f"{path}: expected a JSON object {{\"dia0_utt0\": [paths...]}}, "
                                   f"got {type(data).__name__}")
    out: dict[str, list[str]] = {}
    for key, paths in data.items():
        utt = meld_utt_id(key, path)
        if utt in out:
            raise FacialMMTFormatError(f"{path}: {utt} appears twice")
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise FacialMMTFormatError(f"{path}: {key}: expected a list of JPEG paths, got {type(paths).__name__}")
        out[utt] = paths
    return out


# ------------------------------------------------------------------------------------------------
# features


def _check_free(folder: Path, names: tuple[str, ...], overwrite: bool) -> None:
    if overwrite or not folder.is_dir():
        return
    old = [p.name for p in folder.iterdir() if p.name in names or p.name.startswith("shard-")]
    if old:
        raise FileExistsError(f"{folder} already holds output ({sorted(old)[0]}); pass --overwrite to replace it")


def import_features(
    src: Path, out: Path, split: str, kind: str, *, profile: Path, dtype: str = "float16",
    overwrite: bool = False, trust: bool = False,
) -> Path:
    """Convert one ``meld_{split}_{kind}_utt.pkl`` (FacialMMT split name) into a feature folder."""
    spec = SPECS[kind]
    path = src / spec.file(split)
    folder = spec.folder(out, split)
    _check_free(folder, (INDEX_NAME, META_NAME), overwrite)
    ids = read_utt_profile(profile)
    feats, mask = read_feature_pickle(path, split, kind, trust=trust)
    if feats.shape[0] != len(ids):
        raise FacialMMTFormatError(f"{path}: {feats.shape[0]} rows but {profile} lists {len(ids)} utterances")
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    width = int(feats.shape[1])
    full = 0
    for i in order:  # check everything before writing anything
        rows = feats[i][mask[i] > 0]
        full += rows.shape[0] == width
        if rows.size and not np.isfinite(rows).all():
            raise FacialMMTFormatError(f"{path}: row {i} ({ids[i]}) holds NaN/inf")
        if dtype == "float16" and rows.size and float(np.abs(rows).max()) > FLOAT16_MAX:
            raise FacialMMTFormatError(f"{path}: row {i} ({ids[i]}) exceeds the float16 range; use --dtype float32")
    info = {
        "extractor": spec.extractor,
        "source": f"FacialMMT release: {path.name} + {profile.name}",
        "source_split": split,
        "model": spec.model,
        "padded_width": width,
        "utterances_at_padded_width": int(full),
        "contract": spec.contract(int(feats.shape[2])).to_dict(),
    }
    with FeatureWriter(folder, dim=int(feats.shape[2]), dtype=dtype, overwrite=overwrite, info=info) as w:
        for i in order:
            w.add(ids[i], feats[i][mask[i] > 0])
    log.info("%s: %d utterances (%s, padded width %d) -> %s", path.name, len(ids), dtype, width, folder)
    return folder


# ------------------------------------------------------------------------------------------------
# faces


def _resolve(p: str, base: Path, rewrite: tuple[str, str] | None) -> Path:
    if rewrite is not None and p.startswith(rewrite[0]):
        p = rewrite[1] + p[len(rewrite[0]):]
    q = Path(p).expanduser()
    return q if q.is_absolute() else base / q


def plan_faces(
    src: Path, split: str, *, face_root: Path | None = None, rewrite: tuple[str, str] | None = None,
    profile: Path | None = None,
) -> dict[str, list[Path] | None]:
    """``{utt_id: [existing JPEG paths]}`` of one split (sorted ids), every path checked.

    Relative paths are taken from ``face_root`` (default: the JSON's folder); ``rewrite`` =
    ``(old, new)`` replaces a leading ``old`` of each listed path first. Utterances of ``profile``
    (when given and present) that the list lacks map to None.
    """
    path = src / f"{split}_facseqs_160_paths_final.json"
    lists = read_face_lists(path)
    base = face_root if face_root is not None else path.parent
    out: dict[str, list[Path] | None] = {}
    for utt, paths in lists.items():
        files = [_resolve(p, base, rewrite) for p in paths]
        for p, f in zip(paths, files):
            if not f.is_file():
                shown = f"{p!r} -> {f}" if str(f) != p else repr(p)
                raise FileNotFoundError(f"{path}: {utt}: face JPEG not found: {shown} (fix the location with "
                                        "--face-root for relative paths or --rewrite-prefix OLD NEW for absolute ones)")
        out[utt] = files
    if profile is not None and profile.is_file():
        for utt in read_utt_profile(profile):
            out.setdefault(utt, None)
    return dict(sorted(out.items()))


def _load_crop(path: Path, size: int) -> tuple[np.ndarray, bool]:
    try:
        img = decode_jpeg(path.read_bytes())
    except (OSError, ValueError) as e:
        raise FacialMMTFormatError(f"{path}: cannot read the face JPEG ({e})") from e
    if img.shape[:2] == (size, size):
        return img, False
    interp = cv2.INTER_AREA if min(img.shape[:2]) > size else cv2.INTER_CUBIC
    return cv2.resize(img, (size, size), interpolation=interp), True


def import_faces(
    plan: dict[str, list[Path] | None], faces_out: Path, split: str, *, face_size: int = 160,
    jpeg_quality: int = 95, utts_per_shard: int = 100, overwrite: bool = False,
) -> Path:
    """Write one split's crops (``plan`` from :func:`plan_faces`) as stage-1 shards + manifest."""
    folder = faces_out / SPLIT_MAP[split]
    names = (FACE_INDEX_NAME, "manifest.jsonl", "timings.jsonl")
    _check_free(folder, names, overwrite)
    if folder.is_dir():
        for p in folder.iterdir():
            if p.name in names or (p.name.startswith("shard-") and p.name.endswith(".tar")):
                p.unlink()
    clips = DataConfig().splits[SPLIT_MAP[split]].clips
    records, resized = [], 0
    with FaceShardWriter(folder, utts_per_shard=utts_per_shard, jpeg_quality=jpeg_quality, plan=list(plan)) as w:
        for utt, listed in plan.items():
            files = listed or []
            crops = []
            for f in files:
                img, r = _load_crop(f, face_size)
                crops.append(img)
                resized += r
            w.add(utt, np.stack(crops) if crops else np.zeros((0, face_size, face_size, 3), np.uint8))
            rec = {
                "clip": f"{clips}/{utt}.mp4", "utt_id": utt, "status": "ok" if files else "no_face",
                "fps": None, "n_frames": 0,
                "frames": [{"frame": k, "t": None, "box": None, "det_score": None, "speaking": None, "track": None,
                            "file": f.name} for k, f in enumerate(files)],
                "tracks": [], "source": "facialmmt", "source_split": split,
            }
            if not files:
                rec["reason"] = ("empty face list in FacialMMT's JSON" if listed is not None
                                 else "not in FacialMMT's face list (listed in its utt_profile)")
            records.append(rec)
    write_manifest(folder / "manifest.jsonl", records, timings_path=None)
    n_ok = sum(r["status"] == "ok" for r in records)
    log.info("faces %s: %d utterances (%d with faces, %d crops resized to %d) -> %s", split, len(records), n_ok,
             resized, face_size, folder)
    return folder


# ------------------------------------------------------------------------------------------------
# command line

TRUST_MESSAGE = (
    "refusing to read FacialMMT's .pkl feature files without --trust-pickle: unpickling a file can execute "
    "arbitrary code. Only convert pickles from a source you trust (the NUSTM/FacialMMT release), then rerun "
    "with --trust-pickle (loading is still restricted to numpy arrays and builtin containers). To import only "
    "the face crops (JSON + JPEG, no pickle), pass --faces-out without --out."
)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="facialmmt import",
                                 description="Import FacialMMT's released features (pkl) and face crops (JSON + JPEG).")
    ap.add_argument("--src", required=True, type=Path, help="FacialMMT's preprocess_data/T+A+V folder")
    ap.add_argument("--out", type=Path, help="feature root: writes <out>/{visual,audio}/facialmmt_*/<split>/")
    ap.add_argument("--faces-out", type=Path, help="face root: writes <faces-out>/<split>/ shards + manifest.jsonl")
    ap.add_argument("--trust-pickle", action="store_true", help="allow reading the .pkl files (needed with --out)")
    ap.add_argument("--splits", nargs="+", default=["train", "val", "test"],
                    help="FacialMMT splits (train val test; dev = val)")
    ap.add_argument("--modalities", nargs="+", choices=sorted(SPECS), default=["vision", "audio"],
                    help="pickled modalities to import with --out")
    ap.add_argument("--profile-dir", type=Path, help="folder of {split}_utt_profile.json (default: --src)")
    ap.add_argument("--dtype", choices=("float16", "float32"), default="float16", help="stored feature dtype")
    ap.add_argument("--face-root", type=Path, help="base of relative JPEG paths (default: the JSON's folder)")
    ap.add_argument("--rewrite-prefix", nargs=2, metavar=("OLD", "NEW"),
                    help="replace a leading OLD of every JPEG path by NEW (FacialMMT's lists hold absolute paths)")
    ap.add_argument("--face-size", type=int, default=160, help="crop size stored (others are resized)")
    ap.add_argument("--overwrite", action="store_true", help="replace existing output folders")
    ap.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if args.out is None and args.faces_out is None:
        log.error("nothing to do: give --out (features, from the .pkl files) and/or --faces-out (face crops)")
        return 2
    try:
        splits = list(dict.fromkeys(_SPLIT_ALIASES[s] for s in args.splits))
    except KeyError as e:
        log.error("unknown split %s (valid: train, val (= dev), test)", e)
        return 2
    if args.face_size < 1:
        log.error("--face-size must be >= 1")
        return 2
    if args.out is not None and not args.trust_pickle:
        log.error("%s", TRUST_MESSAGE)
        return 2
    src = args.src
    pdir = args.profile_dir or src
    rewrite = tuple(args.rewrite_prefix) if args.rewrite_prefix else None
    try:
        # 1. every needed file exists, every output folder is free, every face path resolves
        needed = []
        if args.out is not None:
            for s in splits:
                needed += [src / SPECS[k].file(s) for k in args.modalities] + [pdir / f"{s}_utt_profile.json"]
                for k in args.modalities:
                    _check_free(SPECS[k].folder(args.out, s), (INDEX_NAME, META_NAME), args.overwrite)
        if args.faces_out is not None:
            needed += [src / f"{s}_facseqs_160_paths_final.json" for s in splits]
            for s in splits:
                _check_free(args.faces_out / SPLIT_MAP[s], (FACE_INDEX_NAME, "manifest.jsonl"), args.overwrite)
        for p in needed:
            if not p.is_file():
                raise FileNotFoundError(f"FacialMMT file not found: {p}")
        face_plans = {}
        if args.faces_out is not None:
            for s in splits:
                profile = pdir / f"{s}_utt_profile.json"
                face_plans[s] = plan_faces(src, s, face_root=args.face_root, rewrite=rewrite, profile=profile)
        # 2. features (one pickle in memory at a time), then faces
        if args.out is not None:
            log.warning("--trust-pickle: unpickling FacialMMT files from %s (restricted to numpy arrays)", src)
            for s in splits:
                for k in args.modalities:
                    import_features(src, args.out, s, k, profile=pdir / f"{s}_utt_profile.json", dtype=args.dtype,
                                    overwrite=args.overwrite, trust=True)
        for s, plan in face_plans.items():
            import_faces(plan, args.faces_out, s, face_size=args.face_size, overwrite=args.overwrite)
    except (FileNotFoundError, FileExistsError, FacialMMTFormatError) as e:
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
