"""Utterance features with swappable extractors.

One registry for both modalities::

    from stage2_mer.features import create_extractor, list_extractors, FeatureWriter, FeatureReader
    ext = create_extractor("inception_resnet_v1", pretrained="vggface2")  # faces (N,160,160,3) -> (N,512)
    ext = create_extractor("wav2vec2", model="models/wav2vec2-base-960h", layer=-1)  # wave (n,) -> (L,768)
    ext.contract  # Contract(modality, dim, frame_rate, image_size/mean/std or sample_rate)

Registered: visual ``inception_resnet_v1``, ``timm``, ``dlib_resnet``; audio ``wav2vec2``,
``hf_audio``, ``fbank``. Storage: :mod:`stage2_mer.features.store` (layout in ``SCHEMA.md``).
"""

from __future__ import annotations

from . import audio, visual  # noqa: F401  (register the extractors)
from .registry import (
    PER_FACE_FRAME,
    AudioExtractor,
    Contract,
    FeatureExtractor,
    VisualExtractor,
    create_extractor,
    extractor_class,
    list_extractors,
    register_extractor,
    resolve_device,
)
from .store import FeatureReader, FeatureWriter, length_cap

__all__ = [
    "PER_FACE_FRAME",
    "AudioExtractor",
    "Contract",
    "FeatureExtractor",
    "FeatureReader",
    "FeatureWriter",
    "VisualExtractor",
    "create_extractor",
    "extractor_class",
    "length_cap",
    "list_extractors",
    "register_extractor",
    "resolve_device",
]
