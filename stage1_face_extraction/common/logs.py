"""Logging set-up shared by the stage entry points (libraries only use ``logging.getLogger``)."""

from __future__ import annotations

import logging


def setup_logging(level: int = logging.INFO) -> None:
    """One-line log format for entry points; libraries only use ``logging.getLogger(__name__)``."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
