"""Stage 2 of FacialMMT: utterance features and the multitask emotion-recognition model."""

__version__ = "0.1.0"
