"""Errors of the bag tools (nuScenes -> rosbag2 converter and replay); every message names the thing at fault.

Hierarchy::

    BagToolError
    ├── ConvertError          bad options, missing tables or scenes, unusable destination
    │   └── SourceError       a missing or corrupt source file (``.path`` names it)
    └── ReplayError           an unreadable bag or an unusable replay option
"""

from __future__ import annotations

from pathlib import Path

from fusionocc_core.errors import FusionOccError


class BagToolError(FusionOccError):
    """Base class of every error raised by the bag tools (`bag_converter`, `bag_plan`, `bag_messages`, `replay`)."""


class ConvertError(BagToolError):
    """The conversion cannot start or cannot finish: options, dataset tables, scenes or destination."""


class SourceError(ConvertError):
    """A source file of the dataset is missing or corrupt.

    Attributes:
        path: the offending file.
    """

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = Path(path)
        super().__init__(f"{self.path}: {problem}")


class ReplayError(BagToolError):
    """A bag cannot be replayed: missing, unreadable, or the options select nothing."""
