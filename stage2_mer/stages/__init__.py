"""DVC stage entry points: each is a thin script (params section in, declared outs out).

:func:`param_sections` maps every stage-2 params.yaml section to the dataclass that reads it
(``facialmmt doctor`` and a test load the repository's params.yaml through all of them).
"""

from __future__ import annotations


def param_sections() -> dict[str, type]:
    """Stage-2 params.yaml section (dotted for nested ones) -> config dataclass (imported lazily)."""
    from stage2_mer.features.extract import FeatureStageConfig
    from stage2_mer.fer import FERConfig
    from stage2_mer.model.config import ModelConfig
    from stage2_mer.stages.make_affwild2 import AffWild2DemoConfig
    from stage2_mer.train.loop import TrainConfig

    return {
        "features.visual": FeatureStageConfig,
        "features.audio": FeatureStageConfig,
        "affwild2_demo": AffWild2DemoConfig,
        "model": ModelConfig,
        "fer": FERConfig,
        "train": TrainConfig,
    }
