"""Config checks: every params.yaml section through the loader its stage uses (strict: an unknown
key is a FAIL naming the valid ones), and the registry names and keys of the components it picks
(detector, speaking scorer, identity embedder, feature extractors), checked by each registry's
``validate``."""

from __future__ import annotations

from typing import Any

from .base import FAIL, OK, WARN, Checkup


def check_config(doc: Checkup, sections: dict[str, type]) -> bool:
    """Load every section of ``sections`` (section name, dotted for nested ones -> the config
    dataclass its stage reads it with) from the params file into ``doc.cfg``; False when the file
    itself cannot be read."""
    from stage1_face_extraction.common.config import ConfigError, from_dict, load_params, with_runtime

    try:
        doc.raw = load_params(doc.params_path)
    except (ConfigError, OSError, ValueError) as exc:
        doc.add(FAIL, "params", str(exc), "pass --params PATH of the project's params.yaml")
        return False
    doc.add(OK, "params", f"{doc.params_path}: sections {', '.join(doc.raw) or '(none)'}")
    for section, cls in sections.items():
        node: Any = doc.raw
        for part in section.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        name = f"config {section}"
        if node is None:
            doc.add(FAIL, name, f"section '{section}' is missing from {doc.params_path}",
                    f"copy the '{section}' section from the repository's params.yaml")
            continue
        try:
            doc.cfg[section] = from_dict(cls, with_runtime(doc.raw, section, node), section)
        except (ValueError, TypeError) as exc:  # ConfigError, MeldFormatError, __post_init__ checks
            doc.add(FAIL, name, str(exc), "fix the key in params.yaml (the message lists the valid ones)")
            continue
        problem = _check_components(section, doc.cfg[section])
        if problem:
            doc.add(FAIL, name, problem, "fix the key in params.yaml (the message lists the valid ones)")
        else:
            doc.add(OK, name, f"valid ({cls.__name__})")
    known = {s.split(".")[0] for s in sections} | {"runtime"}  # runner knobs, merged into the sections above
    for extra in sorted(set(doc.raw) - known):
        doc.add(WARN, f"config {extra}", f"no stage reads section '{extra}' (a typo?)",
                "remove it or rename it to the section it was meant for")
    for extra in sorted(set(doc.raw.get("features") or {}) - {"visual", "audio"}):
        doc.add(WARN, f"config features.{extra}", f"no stage reads features.{extra} (modalities: visual, audio)",
                "remove it or rename it")
    return True


def _check_components(section: str, cfg: Any) -> str | None:
    """Registry names and keys of the components a section picks (what ``create_*`` would check)."""
    from stage1_face_extraction.common.config import ConfigError

    try:
        if section == "stage1":
            from stage1_face_extraction.asd.base import validate_scorer
            from stage1_face_extraction.detectors.base import validate_detector
            from stage1_face_extraction.identity.base import validate_embedder

            det = dict(cfg.detector)
            name = det.pop("name")
            det.pop("stride", None)  # the pipeline's, not the detector's
            validate_detector(name, det)
            asd = dict(cfg.asd)
            validate_scorer(asd.pop("name"), asd, where="stage1.asd")
            if cfg.identity.enabled:
                emb = dict(cfg.identity.embedder)
                validate_embedder(emb.pop("name"), emb)
        elif section.startswith("features."):
            from stage2_mer.features.registry import extractor_class, validate_extractor

            modality = section.split(".", 1)[1]
            cls = extractor_class(cfg.name)
            if cls.modality != modality:
                return f"{section}.name {cfg.name!r} is a {cls.modality} extractor, not {modality}"
            validate_extractor(cfg.name, cfg.options)
    except (ConfigError, ValueError, TypeError) as exc:
        return str(exc)
    return None
