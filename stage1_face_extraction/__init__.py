"""Stage 1 of FacialMMT: MELD ingest, the embedded demo corpus, and real-speaker face sequences."""

__version__ = "0.1.0"
