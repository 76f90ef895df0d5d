"""Stage 1's outputs on disk: face shards (the stage-1 -> stage-2 contract) and the per-clip manifest.

Every public name is importable from here (``from stage1_face_extraction.store import FaceShardReader``);
the modules behind it:

- ``shards``: JPEG crops in reproducible tar shards with ``index.jsonl``, written resumably
  (:class:`FaceShardWriter`) and read by seeking (:class:`FaceShardReader`);
- ``jpeg``: the crops' JPEG codec (fixed settings: same crop, same bytes);
- ``manifest``: ``manifest.jsonl`` (one record per clip, deterministic bytes; :class:`ManifestAppender`
  appends rows as clips finish), its ``timings.jsonl`` sidecar, and ``identities.jsonl``;
- ``sheets``: contact sheets of crops (pictures for people);
- ``jsonl``: the JSON Lines reader behind the index and the manifest.

Formats: ``stage1_face_extraction/SCHEMA.md``. Atomic writes are
:mod:`stage1_face_extraction.common.atomic`.
"""

from stage1_face_extraction.store.jpeg import decode_jpeg, encode_jpeg
from stage1_face_extraction.store.manifest import (
    FRAME_KEYS,
    NO_FRAMES,
    STATUSES,
    TOP_KEYS,
    ManifestAppender,
    canonical_record,
    read_identities,
    read_manifest,
    validate_record,
    write_identities,
    write_manifest,
)
from stage1_face_extraction.store.shards import INDEX_NAME, SHARD_FMT, FaceShardReader, FaceShardWriter, check_utt_id
from stage1_face_extraction.store.sheets import contact_sheet

__all__ = [
    "FRAME_KEYS", "INDEX_NAME", "NO_FRAMES", "SHARD_FMT", "STATUSES", "TOP_KEYS", "FaceShardReader",
    "FaceShardWriter", "ManifestAppender", "canonical_record", "check_utt_id", "contact_sheet", "decode_jpeg",
    "encode_jpeg", "read_identities", "read_manifest", "validate_record", "write_identities", "write_manifest",
]
