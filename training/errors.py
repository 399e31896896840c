"""The error of a training run that cannot start or continue (the other training errors live with their
modules: ConfigError, TrainingCheckpointError, EvaluationError, LogitAdjustmentError, MergeError)."""

from __future__ import annotations

from fusionocc_core.errors import FusionOccError


class TrainError(FusionOccError, RuntimeError):
    """A training run cannot start or continue (message names the file/option at fault)."""
