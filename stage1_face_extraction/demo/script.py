"""The dialogue script of the demo corpus: who speaks, what, with which emotion, and how it is shot.

Per split, dialogues of 2-3 characters; per dialogue, 4-6 utterances. Every utterance gets:

* a speaker (consecutive turns usually alternate),
* one of the 7 MELD emotions (neutral most frequent, MELD-like proportions; every emotion present
  in train when train has at least 8 utterances) and the sentiment that goes with it (surprise can
  be positive or negative, as in MELD),
* a short MELD-like line from templates written for this project, with slot words; the templates
  of an emotion share cue words ("Ew", "I miss", "Oh my God"), so a text model can learn them;
  some lines hold commas, double quotes and curly apostrophes (’) like the real MELD CSVs,
* a shot plan: ``normal`` (speaker + listeners in a wide shot), ``cut_to_listener`` (wide shot,
  then a hard cut to a close-up of one listener at ``cut_frame`` while the speaker keeps talking)
  or ``speaker_off_screen`` (only listeners visible the whole clip); the counts per split are
  stratified (round(p * n), at least one of each kind when the split has 3+ utterances),
* a length in video frames and a place on a fake episode clock (Season, Episode, Start/End time).

Pure python + numpy: no images, no audio.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from stage1_face_extraction.common.labels import EMOTIONS

logger = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "dev", "test")
# roughly the MELD train distribution
EMOTION_WEIGHTS: dict[str, float] = {
    "neutral": 0.45,
    "joy": 0.17,
    "surprise": 0.12,
    "anger": 0.11,
    "sadness": 0.07,
    "disgust": 0.04,
    "fear": 0.04,
}
SENTIMENT_OF: dict[str, str] = {
    "neutral": "neutral",
    "joy": "positive",
    "anger": "negative",
    "disgust": "negative",
    "fear": "negative",
    "sadness": "negative",
    # surprise: from the template (MELD annotates surprise as positive or negative)
}
SHOT_KINDS: tuple[str, ...] = ("normal", "cut_to_listener", "speaker_off_screen")

SLOT_WORDS: dict[str, tuple[str, ...]] = {
    "thing": ("couch", "sweater", "ring", "chair", "tickets", "bracelet", "duck", "TV", "key", "foosball table"),
    "place": (
        "Central Perk",
        "the coffee house",
        "Vegas",
        "London",
        "the museum",
        "the hospital",
        "Barbados",
        "the restaurant",
    ),
    "food": ("sandwich", "cheesecake", "turkey", "lasagna", "pizza", "trifle", "jam"),
    "person": ("Gunther", "Janice", "Mike", "Richard", "Emily", "Paolo", "Carol", "Susan"),
    "time": ("eight", "noon", "seven thirty", "midnight", "ten"),
    "job": ("job", "part", "promotion", "audition", "apartment"),
}

# (template, sentiment or None = SENTIMENT_OF[emotion]); {name} is another character on screen.
TEMPLATES: dict[str, tuple[tuple[str, str | None], ...]] = {
    "neutral": (
        ("So, are you going to {place} tonight?", None),
        ("I think {person} has the {thing}.", None),
        ("Okay, I’ll see you at {time}.", None),
        ("Wait, where’s the {thing}?", None),
        ("Hey {name}, can you pass me the {food}?", None),
        ("Uh, I don’t know. Maybe.", None),
        ("Alright, let’s go.", None),
        ("Yeah, {person} called. I said we’d be at {place}.", None),
        ("No, the {thing} is in the other room.", None),
        ("What time is it? Is it {time} already?", None),
    ),
    "joy": (
        ("Oh, this is so great!", None),
        ("I love this {thing}, it’s perfect!", None),
        ("Yes! I got the {job}!", None),
        ("Aww, {name}, that is the sweetest thing ever!", None),
        ("Ha! You’re the best, {name}!", None),
        ("We’re going to {place}! Woo-hoo!", None),
        ("I’m so happy for you guys!", None),
    ),
    "surprise": (
        ("What?! You got the {job}?!", "positive"),
        ("Oh my God! Is that a {thing}? For me?", "positive"),
        ("No way! {person} is back?!", "positive"),
        ("Really?! {person} did that?", "negative"),
        ("Wait, what? You’re moving to {place}?!", "negative"),
        ("Oh my God, {name}! What happened to the {thing}?", "negative"),
        ("Are you serious?", "negative"),
    ),
    "fear": (
        ("Oh no, no, no. I can’t do this.", None),
        ("Did you hear that? I think someone’s in {place}.", None),
        ("I’m scared, {name}. What if it doesn’t work?", None),
        ("Please don’t make me go to {place}!", None),
        ("Oh God, {person} is coming, hide me!", None),
    ),
    "sadness": (
        ("I just... I really miss {person}.", None),
        ("It’s over. We broke up.", None),
        ("Nobody remembered my birthday, {name}.", None),
        ("I lost the {thing}, and it was my grandmother’s.", None),
        ("I’m sorry. I’m so sorry.", None),
    ),
    "disgust": (
        ("Ew! That is disgusting.", None),
        ("Eww, what is that smell? Is that the {food}?", None),
        ("You ate the {food} off the floor? Gross!", None),
        ("Ugh, I can’t even look at it.", None),
        ('Ew, he said, "Nice {thing}," and winked. Gross.', None),
    ),
    "anger": (
        ("Are you kidding me? You said you’d be here at {time}!", None),
        ("Get out! Get out of my apartment!", None),
        ("I can’t believe you, {name}!", None),
        ("That’s it! I’ve had it with this {thing}!", None),
        ("We were on a break!", None),
        ('Don’t you "honey" me, {name}!', None),
    ),
}


@dataclass
class ScriptConfig:
    """What the script generator needs (a subset of the demo config)."""

    dialogues_per_split: dict[str, int] = field(default_factory=lambda: {"train": 6, "dev": 4, "test": 4})
    utterances_min: int = 4
    utterances_max: int = 6
    characters_min: int = 2
    characters_max: int = 3
    duration_min_s: float = 2.0
    duration_max_s: float = 4.0
    fps: Fraction = Fraction(24000, 1001)
    p_cut_to_listener: float = 0.2  # fraction of each split's clips
    p_speaker_off_screen: float = 0.1
    p_talking_over: float = 0.0  # normal clips where one listener's mouth moves too


@dataclass
class Utterance:
    """One line of one dialogue, i.e. one clip."""

    split: str
    dialogue_id: int
    utterance_id: int
    speaker: str
    emotion: str
    sentiment: str
    text: str
    shot_plan: str  # one of SHOT_KINDS
    n_frames: int
    season: int
    episode: int
    start_s: float  # on the fake episode clock
    end_s: float
    cut_frame: int | None = None  # cut_to_listener: first frame of the close-up
    cut_to: str | None = None  # cut_to_listener: the listener in the close-up
    talking_over: str | None = None  # normal: a listener whose mouth also moves

    @property
    def utt_id(self) -> str:
        return f"dia{self.dialogue_id}_utt{self.utterance_id}"

    @property
    def key(self) -> str:
        return f"{self.split}/{self.utt_id}"


@dataclass
class Dialogue:
    """Characters (in on-screen order, left to right) and their utterances."""

    split: str
    dialogue_id: int
    characters: tuple[str, ...]
    season: int
    episode: int
    utterances: list[Utterance] = field(default_factory=list)


def format_time(seconds: float) -> str:
    """MELD's ``hh:mm:ss,mmm`` clock format."""
    ms = int(round(seconds * 1000.0))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def frame_range(cfg: ScriptConfig) -> tuple[int, int]:
    """Smallest and largest clip length in frames that respect the duration bounds."""
    lo = math.ceil(cfg.duration_min_s * cfg.fps)
    hi = math.floor(cfg.duration_max_s * cfg.fps)
    if hi < lo:
        raise ValueError(f"no whole number of frames between {cfg.duration_min_s} s and {cfg.duration_max_s} s")
    return lo, hi


def fill_template(rng: np.random.Generator, emotion: str, listener: str) -> tuple[str, str]:
    """(text, sentiment) for one utterance of ``emotion`` addressed to ``listener``."""
    templates = TEMPLATES[emotion]
    template, sentiment = templates[int(rng.integers(len(templates)))]
    words = {k: v[int(rng.integers(len(v)))] for k, v in SLOT_WORDS.items()}
    text = template.format(name=listener, **words)
    return text, sentiment or SENTIMENT_OF[emotion]


def _draw_emotions(rng: np.random.Generator, n: int) -> list[str]:
    names = list(EMOTION_WEIGHTS)
    p = np.array([EMOTION_WEIGHTS[e] for e in names], np.float64)
    return [names[i] for i in rng.choice(len(names), size=n, p=p / p.sum())]


def _balance_emotions(rng: np.random.Generator, emotions: list[str], require_all: bool) -> list[str]:
    """Neutral most frequent; every emotion present when ``require_all`` and there is room."""
    emotions = list(emotions)
    n = len(emotions)
    if require_all and n >= len(EMOTIONS) + 1:
        for e in EMOTIONS:
            counts = Counter(emotions)
            if counts[e]:
                continue
            donor = max((c for c in EMOTIONS if counts[c] > 1), key=lambda c: (counts[c], c != "neutral"))
            idx = [i for i, x in enumerate(emotions) if x == donor]
            emotions[idx[int(rng.integers(len(idx)))]] = e
    while emotions:  # neutral strictly most frequent (when possible)
        counts = Counter(emotions)
        other = max((c for c in EMOTIONS if c != "neutral"), key=lambda c: counts[c])
        if counts["neutral"] > counts[other] or counts[other] == 0:
            break
        if counts[other] <= 1 and counts["neutral"] >= 1:  # a tie of singletons: keep the variety
            break
        idx = [i for i, x in enumerate(emotions) if x == other]
        emotions[idx[int(rng.integers(len(idx)))]] = "neutral"
    return emotions


def _draw_shots(rng: np.random.Generator, n: int, cfg: ScriptConfig) -> list[str]:
    """Shot kinds for the ``n`` utterances of a split, stratified: round(p * n) clips of each
    special kind (at least one when p > 0 and n >= 3) at random positions, the rest normal."""
    n_cut = round(cfg.p_cut_to_listener * n)
    n_off = round(cfg.p_speaker_off_screen * n)
    if n >= 3:
        n_cut = max(n_cut, 1 if cfg.p_cut_to_listener > 0.0 else 0)
        n_off = max(n_off, 1 if cfg.p_speaker_off_screen > 0.0 else 0)
    n_cut = min(n_cut, n)
    n_off = min(n_off, n - n_cut)
    kinds = ["cut_to_listener"] * n_cut + ["speaker_off_screen"] * n_off + ["normal"] * (n - n_cut - n_off)
    return [kinds[i] for i in rng.permutation(n)]


def make_script(rng: np.random.Generator, cfg: ScriptConfig, cast: Sequence[str]) -> dict[str, list[Dialogue]]:
    """The whole corpus script: split -> dialogues (dialogue ids from 0 in every split)."""
    unknown = sorted(set(cfg.dialogues_per_split) - set(SPLITS))
    if unknown:
        raise ValueError(f"unknown split(s) {unknown}; splits are {SPLITS}")
    if not 2 <= cfg.characters_min <= cfg.characters_max <= min(3, len(cast)):
        raise ValueError(f"characters per dialogue must satisfy 2 <= min <= max <= {min(3, len(cast))}")
    if not 1 <= cfg.utterances_min <= cfg.utterances_max:
        raise ValueError("utterances per dialogue must satisfy 1 <= min <= max")
    f_lo, f_hi = frame_range(cfg)
    script: dict[str, list[Dialogue]] = {}
    for split in SPLITS:
        n_dia = int(cfg.dialogues_per_split.get(split, 0))
        dialogues: list[Dialogue] = []
        for d in range(n_dia):
            k = int(rng.integers(cfg.characters_min, cfg.characters_max + 1))
            chars = tuple(cast[i] for i in rng.choice(len(cast), size=k, replace=False))
            dialogues.append(
                Dialogue(split, d, chars, season=int(rng.integers(1, 11)), episode=int(rng.integers(1, 25)))
            )
        n_utts = [int(rng.integers(cfg.utterances_min, cfg.utterances_max + 1)) for _ in dialogues]
        total = sum(n_utts)
        emotions = _balance_emotions(rng, _draw_emotions(rng, total), require_all=split == "train")
        shots = _draw_shots(rng, total, cfg)
        i = 0
        for dia, n_u in zip(dialogues, n_utts, strict=True):
            clock = float(rng.uniform(60.0, 1200.0))
            speaker = dia.characters[int(rng.integers(len(dia.characters)))]
            for u in range(n_u):
                if u > 0 and rng.random() < 0.85:
                    others = [c for c in dia.characters if c != speaker]
                    speaker = others[int(rng.integers(len(others)))]
                listeners = [c for c in dia.characters if c != speaker]
                n_frames = int(
                    np.clip(round(float(rng.uniform(cfg.duration_min_s, cfg.duration_max_s)) * cfg.fps), f_lo, f_hi)
                )
                duration = float(n_frames / cfg.fps)
                clock += float(rng.uniform(0.1, 1.2))
                text, sentiment = fill_template(rng, emotions[i], listeners[int(rng.integers(len(listeners)))])
                utt = Utterance(
                    split=split,
                    dialogue_id=dia.dialogue_id,
                    utterance_id=u,
                    speaker=speaker,
                    emotion=emotions[i],
                    sentiment=sentiment,
                    text=text,
                    shot_plan=shots[i],
                    n_frames=n_frames,
                    season=dia.season,
                    episode=dia.episode,
                    start_s=round(clock, 3),
                    end_s=round(clock + duration, 3),
                )
                clock += duration
                if utt.shot_plan == "cut_to_listener":
                    utt.cut_frame = int(round(n_frames * float(rng.uniform(0.35, 0.65))))
                    utt.cut_to = listeners[int(rng.integers(len(listeners)))]
                elif utt.shot_plan == "normal" and cfg.p_talking_over > 0.0 and rng.random() < cfg.p_talking_over:
                    utt.talking_over = listeners[int(rng.integers(len(listeners)))]
                dia.utterances.append(utt)
                i += 1
        script[split] = dialogues
        counts = Counter(u.emotion for dia in dialogues for u in dia.utterances)
        logger.debug("script %s: %d dialogues, %d utterances, emotions %s", split, len(dialogues), total, dict(counts))
    return script
