"""``manifest.json`` of a model zip: what the zip holds, who made it, and the sha256 of every file.

Paths in the manifest and the zip are relative to the dataset's results folder
(``AutoSegNet__<plans>__<configuration>/fold_0/checkpoint_final.pth``), POSIX-style.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.layout import CHECKPOINT_VERSION

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "autosegnet-model"
MANIFEST_VERSION = 1


@dataclass
class ModelEntry:
    """One model folder in the zip."""

    folder: str
    configuration: str
    folds: list[str]
    checkpoint: str


@dataclass
class Manifest:
    engine_version: str
    created: str
    dataset_name: str
    labels: dict[str, Any]
    channel_names: dict[str, str]
    file_ending: str
    models: list[ModelEntry]
    files: dict[str, dict[str, Any]]
    plans_version: int
    checkpoint_version: int = CHECKPOINT_VERSION
    description: str = ""
    format: str = MANIFEST_FORMAT
    version: int = MANIFEST_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {"format": data.pop("format"), "version": data.pop("version"), **data}

    @classmethod
    def from_dict(cls, data: Any, source: str = MANIFEST_NAME) -> Manifest:
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise AutoSegNetError(f"{source}: not an AutoSegNet model manifest (format must be {MANIFEST_FORMAT!r}).")
        if data.get("version") != MANIFEST_VERSION:
            raise AutoSegNetError(
                f"{source}: manifest version {data.get('version')!r} is not supported (this engine reads "
                f"{MANIFEST_VERSION}); update AutoSegNet."
            )
        names = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - names)
        required = ("engine_version", "dataset_name", "models", "files", "plans_version")
        missing = sorted(n for n in required if n not in data)
        if unknown or missing:
            raise AutoSegNetError(f"{source}: unknown fields {unknown} / missing fields {missing}.")
        try:
            models = [ModelEntry(**entry) for entry in data["models"]]
            values = {k: v for k, v in data.items() if k != "models"}
            manifest = cls(models=models, **values)
        except TypeError as error:
            raise AutoSegNetError(f"{source}: malformed manifest ({error}).") from None
        for path, info in manifest.files.items():
            valid = isinstance(info, dict) and isinstance(info.get("sha256"), str) and type(info.get("size")) is int
            if not valid:
                raise AutoSegNetError(f"{source}: file entry {path!r} needs 'sha256' and 'size'.")
        return manifest


def sha256_of(path: Path) -> str:
    with open(path, "rb") as handle:
        return sha256_stream(handle)


def sha256_stream(handle: IO[bytes], chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: handle.read(chunk), b""):
        digest.update(block)
    return digest.hexdigest()
