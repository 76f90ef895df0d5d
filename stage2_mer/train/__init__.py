"""Stage-2 training: the Accelerate trainer, metrics and safe checkpoints."""

from .checkpoint import (
    SEEDS_JSON,
    checkpoint_data_settings,
    checkpoint_train_config,
    load_models,
    load_state,
    params_hash,
    read_checkpoint,
    save_checkpoint,
)
from .loop import PRESETS, TrainConfig, Trainer, apply_preset, linear_warmup_decay
from .metrics import classification_metrics, confusion_matrix, plot_confusion, summarize_seed_tests, summarize_seeds

__all__ = ["PRESETS", "SEEDS_JSON", "TrainConfig", "Trainer", "apply_preset", "checkpoint_data_settings",
           "checkpoint_train_config", "classification_metrics", "confusion_matrix", "linear_warmup_decay",
           "load_models", "load_state", "params_hash", "plot_confusion", "read_checkpoint", "save_checkpoint",
           "summarize_seed_tests", "summarize_seeds"]
