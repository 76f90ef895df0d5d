"""``facialmmt``: the user-facing command, one sub-command per task.

    facialmmt doctor  [--params params.yaml] ...   preflight: paths, weights, GPU, disk, run-time estimate
    facialmmt predict VIDEO --text "..." [--checkpoint DIR] ...   one clip -> emotion distribution + annotated video

Each sub-command lives in its own module (``stage2_mer.doctor``, ``stage2_mer.predict``) with a
``main(argv)``; this dispatcher imports only the one asked for, so ``facialmmt doctor`` stays quick.
The pipeline stages keep their own entry points (``facialmmt-extract-faces``, ``facialmmt-features``,
``python -m stage2_mer.stages.train`` ...), which ``dvc.yaml`` calls.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "doctor": ("stage2_mer.doctor", "check paths, weights, GPU and disk; estimate the run time"),
    "predict": ("stage2_mer.predict", "emotion of one video clip, with an annotated MP4/GIF"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: facialmmt COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`facialmmt COMMAND --help` describes a command's arguments."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"facialmmt: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
