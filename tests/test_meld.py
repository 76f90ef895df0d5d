"""MELD ingest on the real CSVs (../shared) and on malformed CSVs written under tmp_path."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from stage1_face_extraction.common.labels import EMOTIONS
from stage1_face_extraction.meld import (
    DataConfig,
    MeldFormatError,
    build_utterance_table,
    fix_mojibake,
    parse_time,
    read_split_csv,
    summarize,
)

HEADER = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime"
GOOD_ROWS = [
    '1,"Oh my God, he’s lost it. He’s totally lost it.",Phoebe,sadness,negative,0,0,4,7,"00:20:57,256","00:21:00,049"',
    "2,What?,Monica,surprise,negative,0,1,4,7,\"00:21:01,927\",\"00:21:03,261\"",
    '3,"She said ""no"", right?",Ross,anger,negative,1,0,4,7,"0:21:05,000","0:21:06,500"',
]


def write_csv(path: Path, lines: list[str], *, bom: bool = False, encoding: str = "utf-8") -> Path:
    data = "\r\n".join(lines) + "\r\n"
    raw = data.encode(encoding)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + raw)
    return path


# --- real MELD -------------------------------------------------------------------------------

@pytest.mark.shared
def test_real_meld_counts(shared_meld_dir, tmp_path):
    cfg = DataConfig(meld_root=str(tmp_path / "no_videos_here"), csv_dir=str(shared_meld_dir))
    df = build_utterance_table(cfg)
    summary = summarize(df)
    assert {s: summary[s]["utterances"] for s in summary} == {"train": 9989, "dev": 1109, "test": 2610}
    # Dialogue ids span 0..1038 / 0..113 / 0..279 (1,039 / 114 / 280); train has no dialogue 60.
    assert {s: summary[s]["dialogue_id_span"] for s in summary} == {"train": 1039, "dev": 114, "test": 280}
    assert {s: summary[s]["dialogues"] for s in summary} == {"train": 1038, "dev": 114, "test": 280}
    assert summary["train"]["emotions"] == {
        "neutral": 4710, "joy": 1743, "surprise": 1205, "anger": 1109,
        "sadness": 683, "disgust": 271, "fear": 268,
    }
    # Label ids follow FacialMMT's order.
    assert list(EMOTIONS) == ["neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger"]
    assert (df["label"] == df["emotion"].map({e: i for i, e in enumerate(EMOTIONS)})).all()
    # No clips under this root: recorded, not an error.
    assert not df["clip_exists"].any()
    first = df.iloc[0]
    assert first["utt_id"] == "dia0_utt0" and first["clip"] == "train_splits/dia0_utt0.mp4"
    assert first["text"].startswith("also I was the point person on my company’s transition")
    assert first["start_s"] == pytest.approx(16 * 60 + 16.059)
    test_rows = df[df["split"] == "test"]
    assert test_rows["clip"].str.startswith("output_repeated_splits_test/").all()
    assert df[df["split"] == "dev"]["clip"].str.startswith("dev_splits_complete/").all()
    # utt_id is unique within a split.
    assert not df.duplicated(["split", "utt_id"]).any()
    # Quoted fields with commas survived and no mojibake markers remain.
    assert df["text"].str.contains(",").sum() > 1000
    assert not df["text"].str.contains("â€").any()
    # Times with one-digit hours ("0:36:59,425") are parsed.
    assert (df["end_s"] >= df["start_s"]).mean() > 0.99


def test_clip_exists_and_paths(tmp_path):
    root = tmp_path / "MELD.Raw"
    (root / "train_splits").mkdir(parents=True)
    write_csv(root / "train_sent_emo.csv", [HEADER, *GOOD_ROWS])
    (root / "train_splits" / "dia0_utt1.mp4").write_bytes(b"x")
    df = build_utterance_table(DataConfig(meld_root=str(root)), splits=("train",))
    assert df["clip_exists"].tolist() == [False, True, False]
    assert df["utt_id"].tolist() == ["dia0_utt0", "dia0_utt1", "dia1_utt0"]
    assert df["text"].tolist()[2] == 'She said "no", right?'
    assert df["start_s"].tolist()[2] == pytest.approx(21 * 60 + 5.0)


# --- malformed CSVs --------------------------------------------------------------------------

def test_missing_column_names_file_and_column(tmp_path):
    bad_header = HEADER.replace(",Emotion", "")
    rows = [r.replace(",sadness", "").replace(",surprise", "").replace(",anger", "") for r in GOOD_ROWS]
    p = write_csv(tmp_path / "train_sent_emo.csv", [bad_header, *rows])
    with pytest.raises(MeldFormatError, match=r"train_sent_emo\.csv:1: missing column\(s\) Emotion"):
        read_split_csv(p, "train")


def test_unknown_emotion_names_line(tmp_path):
    rows = list(GOOD_ROWS)
    rows[1] = rows[1].replace("surprise", "bewildered")
    p = write_csv(tmp_path / "dev_sent_emo.csv", [HEADER, *rows])
    with pytest.raises(MeldFormatError, match=r"dev_sent_emo\.csv:3: unknown emotion 'bewildered'"):
        read_split_csv(p, "dev")


def test_bom_is_accepted(tmp_path):
    p = write_csv(tmp_path / "train_sent_emo.csv", [HEADER, *GOOD_ROWS], bom=True)
    rows = read_split_csv(p, "train")
    assert len(rows) == 3 and rows[0]["sr_no"] == 1


def test_mojibake_is_repaired(tmp_path, caplog):
    broken = "He’s totally lost it.".encode("utf-8").decode("cp1252")
    assert broken != "He’s totally lost it." and "â€" in broken
    rows = list(GOOD_ROWS)
    rows[0] = f'1,"{broken}",Phoebe,sadness,negative,0,0,4,7,"00:20:57,256","00:21:00,049"'
    p = write_csv(tmp_path / "train_sent_emo.csv", [HEADER, *rows])
    with caplog.at_level(logging.WARNING):
        out = read_split_csv(p, "train")
    assert out[0]["text"] == "He’s totally lost it."
    assert "mojibake" in caplog.text
    assert fix_mojibake("Café ’ plain") == "Café ’ plain"  # genuine non-ASCII text is untouched


def test_non_utf8_file_names_line(tmp_path):
    rows = list(GOOD_ROWS)
    rows[2] = rows[2].replace("right?", "caf\u00e9")
    p = write_csv(tmp_path / "test_sent_emo.csv", [HEADER, *rows], encoding="cp1252")
    with pytest.raises(MeldFormatError, match=r"test_sent_emo\.csv:2: not valid UTF-8 \(byte 0x92"):
        read_split_csv(p, "test")


@pytest.mark.parametrize(
    ("old", "new", "pattern"),
    [
        (",0,1,4,7,", ",../x,1,4,7,", r":3: Dialogue_ID must be a non-negative integer"),
        ('"00:21:01,927"', '"21:01.9"', r":3: bad time"),
        (",0,1,4,7,", ",0,0,4,7,", r":3: duplicate utterance dia0_utt0 \(first seen on line 2\)"),
        (",negative,0,1", ",meh,0,1", r":3: unknown sentiment 'meh'"),
    ],
)
def test_bad_values_name_line(tmp_path, old, new, pattern):
    rows = list(GOOD_ROWS)
    rows[1] = rows[1].replace(old, new)
    p = write_csv(tmp_path / "train_sent_emo.csv", [HEADER, *rows])
    with pytest.raises(MeldFormatError, match=pattern):
        read_split_csv(p, "train")


def test_parse_time():
    assert parse_time("00:16:16,059") == pytest.approx(976.059)
    assert parse_time("0:36:59,425") == pytest.approx(2219.425)
    with pytest.raises(ValueError):
        parse_time("16:16")


def test_missing_csv_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_sent_emo.csv"):
        build_utterance_table(DataConfig(meld_root=str(tmp_path)), splits=("train",))


def test_unknown_split_key_fails():
    with pytest.raises(MeldFormatError, match="unknown split 'valid'"):
        DataConfig(splits={"valid": {"csv": "x.csv", "clips": "x"}})
