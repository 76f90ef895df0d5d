"""``facialmmt``: the one user-facing command, one verb per task.

    facialmmt --help                 the verbs, one line each
    facialmmt VERB --help            a verb's own options
    facialmmt doctor [--params params.yaml] ...
    facialmmt faces VIDEO... --out DIR [--speaker NAME --reference PHOTOS] [--preview]
    facialmmt predict VIDEO --text "..." [--speaker NAME] [--checkpoint DIR] ...

Each verb is the ``main(argv)`` of its own module (the table ``VERBS``); this dispatcher imports
only the module of the verb asked for, when it is asked for, so ``facialmmt doctor`` stays quick
and the stage-1 verbs never load stage 2. ``dvc.yaml`` keeps calling the same modules with
``python -m``. The older ``facialmmt-<verb>`` console scripts (``facialmmt-faces``,
``facialmmt-extract-faces``, ...) call the same functions and are kept for one release.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Verb:
    module: str  # imported only when the verb runs
    summary: str
    function: str = "main"


VERBS: dict[str, Verb] = {
    # setting up and checking
    "doctor": Verb("stage2_mer.doctor.cli", "check data, weights, GPU and disk before a run; estimate its time"),
    "demo": Verb("stage1_face_extraction.stages.make_demo",
                 "generate the embedded demo corpus (MELD-shaped CSVs, clips, truth.json)"),
    "prepare": Verb("stage1_face_extraction.stages.prepare", "official MELD CSVs -> validated utterance table"),
    # stage 1
    "faces": Verb("stage1_face_extraction.cli", "the speaker's face sequence of any video files"),
    "extract-faces": Verb("stage1_face_extraction.stages.extract_faces",
                          "stage 1 over a whole utterance table (the extract_faces DVC stage)"),
    "finetune-asd": Verb("stage1_face_extraction.stages.finetune_asd",
                         "train a learned active-speaker scorer on per-frame speaking labels"),
    # stage 2
    "features": Verb("stage2_mer.stages.features", "frame-level visual or audio features of every utterance"),
    "import": Verb("stage2_mer.features.importer", "convert FacialMMT's released features and face crops"),
    "train": Verb("stage2_mer.stages.train", "fit the multitask FacialMMT model (the train DVC stage)"),
    "evaluate": Verb("stage2_mer.stages.evaluate", "score a checkpoint on test (the evaluate DVC stage)"),
    "predict": Verb("stage2_mer.predict.cli", "emotion of one video clip, with an annotated MP4/GIF"),
    "report": Verb("stage1_face_extraction.stages.report", "list the pipeline's outputs, metrics and plots"),
}


def usage() -> str:
    width = max(map(len, VERBS))
    lines = ["usage: facialmmt VERB [ARGS...]", "", "verbs:"]
    lines += [f"  {name:<{width}}  {verb.summary}" for name, verb in VERBS.items()]
    lines += ["", "`facialmmt VERB --help` describes a verb's options."]
    return "\n".join(lines)


def _exit_code(code: object) -> int:
    """``SystemExit.code`` as an exit status (argparse: 0 after --help, 2 for bad arguments)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def run(name: str, argv: list[str]) -> int:
    """Run verb ``name`` with ``argv`` (its own arguments) and return its exit status."""
    verb = VERBS[name]
    entry = getattr(importlib.import_module(verb.module), verb.function)
    try:
        return int(entry(argv) or 0)
    except SystemExit as stop:  # argparse's --help and usage errors
        return _exit_code(stop.code)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name == "help":  # `facialmmt help VERB` = `facialmmt VERB --help`
        if not rest:
            print(usage())
            return 0
        name, rest = rest[0], ["--help"]
    name = name.replace("_", "-")  # extract_faces, as the DVC stage is called, works too
    if name not in VERBS:
        close = difflib.get_close_matches(name, list(VERBS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        print(f"facialmmt: unknown verb {argv[0]!r}{hint}\n\n{usage()}", file=sys.stderr)
        return 2
    return run(name, rest)


if __name__ == "__main__":
    sys.exit(main())
