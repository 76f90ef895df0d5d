"""Stage-2 training: the Accelerate trainer, metrics and safe checkpoints."""

from .checkpoint import load_state, params_hash, read_checkpoint, save_checkpoint
from .loop import TrainConfig, Trainer, linear_warmup_decay
from .metrics import classification_metrics, confusion_matrix, plot_confusion, summarize_seeds

__all__ = ["TrainConfig", "Trainer", "classification_metrics", "confusion_matrix", "linear_warmup_decay",
           "load_state", "params_hash", "plot_confusion", "read_checkpoint", "save_checkpoint", "summarize_seeds"]
