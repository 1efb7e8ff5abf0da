"""The workspace: where raw datasets, preprocessed data and results live.

Library code receives a :class:`Workspace`; only the CLI reads environment variables to build one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from AutoSegNetLib.errors import AutoSegNetError

_FOLDER = re.compile(r"^Dataset(\d{3})_(.+)$")


@dataclass(frozen=True)
class Workspace:
    """Three folders, one per stage family: ``raw``, ``preprocessed``, ``results``."""

    raw: Path
    preprocessed: Path
    results: Path

    @classmethod
    def at(cls, root: str | Path) -> Workspace:
        """A workspace with ``raw/``, ``preprocessed/`` and ``results/`` under ``root``."""
        root = Path(root).expanduser().resolve()
        return cls(root / "raw", root / "preprocessed", root / "results")

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], override: str | Path | None = None) -> Workspace:
        """Resolve the workspace (called by the CLI only).

        Order: ``override`` (``--workspace``); ``AUTOSEGNET_HOME``; then nnU-Net's ``nnUNet_raw``,
        ``nnUNet_preprocessed``, ``nnUNet_results`` each where set, the rest under ``~/autosegnet``.
        """
        if override:
            return cls.at(override)
        if environ.get("AUTOSEGNET_HOME"):
            return cls.at(environ["AUTOSEGNET_HOME"])
        default = cls.at(Path.home() / "autosegnet")
        pick = {
            "raw": environ.get("nnUNet_raw"),
            "preprocessed": environ.get("nnUNet_preprocessed"),
            "results": environ.get("nnUNet_results"),
        }
        return cls(**{k: Path(v).expanduser().resolve() if v else getattr(default, k) for k, v in pick.items()})

    def create(self) -> Workspace:
        for folder in (self.raw, self.preprocessed, self.results):
            folder.mkdir(parents=True, exist_ok=True)
        return self

    # ----- datasets ----------------------------------------------------------------------------------
    def dataset_names(self) -> list[str]:
        """Every ``DatasetXXX_Name`` folder found in any of the three folders, sorted."""
        names = set()
        for folder in (self.raw, self.preprocessed, self.results):
            if folder.is_dir():
                names.update(p.name for p in folder.iterdir() if p.is_dir() and _FOLDER.match(p.name))
        return sorted(names)

    def resolve_dataset(self, ident: str | int) -> str:
        """The folder name for ``4``, ``"004"``, ``"Dataset004_Hippocampus"`` or ``"Hippocampus"``."""
        text = str(ident).strip()
        names = self.dataset_names()
        if text.isdigit():
            matches = [n for n in names if int(_FOLDER.match(n).group(1)) == int(text)]
        else:
            matches = [n for n in names if n == text or _FOLDER.match(n).group(2) == text]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise AutoSegNetError(f"Dataset {text!r} is ambiguous: {', '.join(matches)}. Use the full folder name.")
        listing = ", ".join(names) if names else "none"
        raise AutoSegNetError(
            f"No dataset {text!r} in workspace (raw: {self.raw}). Datasets found: {listing}. "
            "Create one with `autosegnet convert ...` or choose another workspace with --workspace."
        )

    def raw_dataset(self, ident: str | int) -> Path:
        return self.raw / self.resolve_dataset(ident)

    def preprocessed_dataset(self, ident: str | int) -> Path:
        return self.preprocessed / self.resolve_dataset(ident)

    def results_dataset(self, ident: str | int) -> Path:
        return self.results / self.resolve_dataset(ident)
