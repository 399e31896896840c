"""One exception root: every error class of the product derives from FusionOccError and no two share a name."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

from fusionocc_core.errors import FusionOccError

PACKAGES = ("fusionocc_core", "fusionocc_ros", "training")
# Control flow, not errors: a bench suite that does not apply here, a private marker caught in its own module.
NOT_ERRORS = {"SuiteSkipped", "_DeclaredSizeError"}


def _error_classes() -> dict[str, list[type]]:
    found: dict[str, list[type]] = {}
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."):
            try:
                module = importlib.import_module(info.name)
            except ImportError as error:  # an optional dependency (e.g. CUDA-only) absent here
                pytest.skip(f"{info.name}: {error}")
            for name, cls in inspect.getmembers(module, inspect.isclass):
                if cls.__module__ == info.name and issubclass(cls, Exception) and name not in NOT_ERRORS:
                    found.setdefault(name, []).append(cls)
    return found


def test_every_error_derives_from_the_root_and_names_are_unique():
    classes = _error_classes()
    assert len(classes) >= 20
    outside = [name for name, found in classes.items() if not all(issubclass(c, FusionOccError) for c in found)]
    assert outside == []
    assert {name: [c.__module__ for c in found] for name, found in classes.items() if len(found) > 1} == {}


def test_errors_keep_their_builtin_base():
    from fusionocc_ros.calibration import CalibrationError
    from training.checkpointing import TrainingCheckpointError

    assert issubclass(CalibrationError, ValueError)
    assert issubclass(TrainingCheckpointError, RuntimeError)
