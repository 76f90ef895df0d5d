"""The base both stages stand on: small, dependency-light pieces with no face-extraction logic.

Stage 2 (``stage2_mer``) imports its shared infrastructure from here, never from the face-extraction
modules around this package (stage 1 never imports stage 2):

- ``config``: strict dataclass configs from ``params.yaml`` (:class:`~.config.ConfigError`,
  ``load_params``, ``load_section``, ``from_dict``, ``to_dict``; the ``runtime`` section's runner knobs);
- ``registry``: the one registry type behind every swappable component kind;
- ``atomic``: atomic file writes (temp file, fsync, rename) and the full-disk error;
- ``weights``: safe local weight loading (safetensors, or torch files with ``weights_only``);
- ``logs``: the log set-up of entry points (libraries only use ``logging.getLogger(__name__)``);
- ``labels``: the emotion labels in FacialMMT's order;
- ``runstate``: resuming an interrupted stage run and never emptying a folder that is not the stage's own.
"""
