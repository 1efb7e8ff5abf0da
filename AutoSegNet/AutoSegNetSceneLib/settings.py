"""Plain settings objects the scene glue takes (the module's parameter node is turned into these)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from AutoSegNetLib.dataset import dataset_folder_name
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.workspace import Workspace
from AutoSegNetSceneLib.options import AMP_CHOICES, CONFIGURATIONS, DEVICES, FOLDS


@dataclass(frozen=True)
class DatasetSettings:
    """Where the training set is exported: ``<workspace>/raw/DatasetXXX_Name`` with these channel names."""

    workspace_root: Path
    dataset_id: int = 501
    dataset_name: str = "SlicerCases"
    channel_names: tuple[str, ...] = ("CT",)
    file_ending: str = ".nii.gz"

    def __post_init__(self) -> None:
        if not str(self.workspace_root).strip():
            raise AutoSegNetError("Choose a workspace folder first (Setup section).")
        if not self.channel_names or any(not name.strip() for name in self.channel_names):
            raise AutoSegNetError("Give every input channel a name, e.g. 'CT' or 'T1, T2' (Setup section).")
        object.__setattr__(self, "workspace_root", Path(self.workspace_root).expanduser())
        dataset_folder_name(self.dataset_id, self.dataset_name)  # validates id and name

    @property
    def workspace(self) -> Workspace:
        return Workspace.at(self.workspace_root)

    @property
    def folder_name(self) -> str:
        return dataset_folder_name(self.dataset_id, self.dataset_name)

    @property
    def raw_folder(self) -> Path:
        return self.workspace.raw / self.folder_name

    @staticmethod
    def parse_channel_names(text: str) -> tuple[str, ...]:
        """``"T1, T2"`` -> ``("T1", "T2")``."""
        return tuple(part.strip() for part in text.split(",") if part.strip())


@dataclass(frozen=True)
class TrainingSettings:
    """What to train: configuration, fold and schedule."""

    configuration: str = "auto"
    fold: str = "all"
    epochs: int = 100
    time_budget_minutes: float = 0.0  # 0: no budget, train the epochs
    device: str = "auto"
    iterations_per_epoch: int | None = None  # None: the engine's default
    amp: str = "auto"  # train --amp: auto (float16 on CUDA), bf16 (fast on CPUs with native bfloat16), off
    extra_args: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.configuration not in CONFIGURATIONS:
            raise AutoSegNetError(f"Unknown configuration {self.configuration!r}; choose one of {CONFIGURATIONS}.")
        if self.fold not in FOLDS:
            raise AutoSegNetError(f"Unknown fold {self.fold!r}; choose one of {FOLDS}.")
        if self.device not in DEVICES:
            raise AutoSegNetError(f"Unknown device {self.device!r}; choose one of {DEVICES}.")
        if self.amp not in AMP_CHOICES:
            raise AutoSegNetError(f"Unknown precision {self.amp!r}; choose one of {AMP_CHOICES}.")
        if self.epochs < 1:
            raise AutoSegNetError(f"Epochs must be at least 1, got {self.epochs}.")
