"""The nuScenes tables of a dataset being written, and deterministic tokens."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from fusionocc_core.synth.categories import ATTRIBUTES, CATEGORIES, VISIBILITY
from fusionocc_core.synth.files import write_json

TABLE_NAMES: tuple[str, ...] = (
    "attribute",
    "calibrated_sensor",
    "category",
    "ego_pose",
    "instance",
    "log",
    "map",
    "sample",
    "sample_annotation",
    "sample_data",
    "scene",
    "sensor",
    "visibility",
    "lidarseg",
)


def make_token(*parts: object) -> str:
    """A 32-hex-digit token from its parts (md5, like the shape of real nuScenes tokens)."""
    return hashlib.md5("/".join(str(p) for p in parts).encode()).hexdigest()


@dataclass
class Tables:
    """All tables as lists of records; the fixed ones (category, attribute, visibility) are filled in."""

    seed: int
    records: dict[str, list[dict]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.records = {name: [] for name in TABLE_NAMES}
        self.records["category"] = [
            {"token": self.category_token(name), "name": name, "description": description, "index": index}
            for index, (name, description) in enumerate(CATEGORIES)
        ]
        self.records["attribute"] = [
            {"token": self.attribute_token(name), "name": name, "description": description}
            for name, description in ATTRIBUTES
        ]
        self.records["visibility"] = [
            {"token": token, "level": level, "description": description}
            for token, level, description in VISIBILITY
        ]

    def category_token(self, name: str) -> str:
        return make_token("category", name)

    def attribute_token(self, name: str) -> str:
        return make_token("attribute", name)

    def sensor_token(self, channel: str) -> str:
        return make_token("sensor", channel)

    def add(self, table: str, record: dict) -> dict:
        """Appends a record to a table and returns it."""
        self.records[table].append(record)
        return record

    def write(self, folder: Path) -> None:
        """Writes every table as `<folder>/<table>.json`."""
        folder.mkdir(parents=True, exist_ok=True)
        for name, records in self.records.items():
            write_json(folder / f"{name}.json", records)
