"""The one root of fusionocc's errors.

Every error fusionocc raises on purpose derives from `FusionOccError`, so a caller (a launch wrapper, a training
driver, a notebook) can catch everything the project reports with one `except`, and each subclass keeps the
built-in base it had (ValueError, RuntimeError, FileNotFoundError) so existing handlers still match. Names are
unique across the project: each says what failed.

Where each lives (the message always names the file, parameter or field at fault):

    FusionOccError
    ├── core:     CheckpointError, CheckpointConversionError, PredictorError, DatasetError, InfoIndexError,
    │             DataFileError, DeviceError, VersionError, SynthError
    ├── ros:      BagToolError (ConvertError, SourceError, ReplayError), SyncError, CalibrationError (sensor
    │             extrinsics/intrinsics), RigError, NodeProcessError, ConversionError, ParameterError,
    │             NodeSetupError
    └── training: ConfigError, TrainError, TrainingCheckpointError (saving/resuming a run), EvaluationError,
                  LogitAdjustmentError (`fusionocc adjust-logits`), MergeError
"""

from __future__ import annotations


class FusionOccError(Exception):
    """Base class of every error fusionocc raises on purpose; the message names what is at fault."""
