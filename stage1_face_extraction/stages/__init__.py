"""DVC stage entry points: each is a thin script (its params section in, declared outs out).

:func:`param_sections` maps every params.yaml section to the dataclass that reads it (a test
loads the repository's params.yaml through all of them, so a typo fails in CI).
"""

from __future__ import annotations


def param_sections() -> dict[str, type]:
    """params.yaml section -> config dataclass (imported lazily: stages stay quick to start)."""
    from stage1_face_extraction.demo.generate import DemoConfig
    from stage1_face_extraction.meld import DataConfig
    from stage1_face_extraction.section import Stage1Config

    return {"data": DataConfig, "demo": DemoConfig, "stage1": Stage1Config}
