"""A trained model folder: ``plans.json``, ``dataset.json``, ``fold_<k>/checkpoint_<name>.pth``, postprocessing.

Layout (``results/DatasetXXX_Name/AutoSegNet__<plans_name>__<configuration>/``) as training writes it, defined in
:mod:`AutoSegNetLib.layout`. Only our own checkpoint format is read here, through the one
checkpoint reader (:mod:`AutoSegNetLib.utils.checkpoint_io`: plain data and tensors only, nothing that runs code);
nnU-Net model folders are converted first (:mod:`AutoSegNetLib.models.nnunet_import`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from AutoSegNetLib.dataset.dataset_json import DatasetJson
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.fingerprint.format import Fingerprint
from AutoSegNetLib.inference.labels import cascade_label_values
from AutoSegNetLib.layout import (
    CHECKPOINT_FILE_GLOB,
    DATASET_JSON_FILE,
    FINGERPRINT_FILE,
    FOLD_FOLDER_GLOB,
    MODEL_FOLDER_PREFIX,
    MODEL_FOLDER_SEPARATOR,
    PLANS_FILE,
    POSTPROCESSING_FILE,
    REQUIRED_MODEL_FILES,
    checkpoint_path,
    folds_with_checkpoint,
    model_folder_name,
    parse_model_folder_name,
)
from AutoSegNetLib.planning.plans import ConfigurationPlan, Plans
from AutoSegNetLib.utils.atomic import read_json
from AutoSegNetLib.utils.checkpoint_io import read_checkpoint
from AutoSegNetLib.workspace import Workspace

log = logging.getLogger(__name__)


def find_model_folder(workspace: Workspace, dataset: str, configuration: str, plans_name: str | None = None) -> Path:
    """The model folder of ``configuration`` in the workspace's results for ``dataset``.

    Without ``plans_name`` the one folder ``AutoSegNet__*__<configuration>`` is used; several give an error
    listing them.
    """
    results = workspace.results_dataset(dataset)
    if plans_name is not None:
        folder = results / model_folder_name(plans_name, configuration)
        if not folder.is_dir():
            raise AutoSegNetError(f"No trained model at {folder}. Train it with `autosegnet train` first.")
        return folder
    candidates = sorted(p for p in results.glob(model_folder_name("*", configuration)) if p.is_dir())
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        ours = f"{MODEL_FOLDER_PREFIX}{MODEL_FOLDER_SEPARATOR}*"
        present = sorted(p.name for p in results.glob(ours) if p.is_dir())
        raise AutoSegNetError(
            f"No trained model for configuration {configuration!r} in {results}. Models there: "
            f"{', '.join(present) or 'none'}. Train one with `autosegnet train` or install one with "
            "`autosegnet install-model`."
        )
    names = ", ".join(p.name for p in candidates)
    raise AutoSegNetError(f"Several models for {configuration!r} in {results}: {names}. Choose one with -p PLANS.")


@dataclass
class ModelFolder:
    """A model folder's plans, dataset description and configuration; loads checkpoints and networks."""

    folder: Path
    plans: Plans
    dataset_json: DatasetJson
    configuration_name: str

    @classmethod
    def open(cls, folder: str | Path, configuration: str | None = None) -> ModelFolder:
        """Read ``plans.json`` and ``dataset.json``; the configuration comes from ``configuration``, the folder
        name, a checkpoint's ``configuration`` field, or the plans' only configuration."""
        folder = Path(folder)
        if not folder.is_dir():
            raise AutoSegNetError(f"Model folder {folder} does not exist.")
        for required in REQUIRED_MODEL_FILES:
            if not (folder / required).is_file():
                raise AutoSegNetError(
                    f"{folder} is not a model folder: {required} is missing. nnU-Net model folders are imported "
                    "with `autosegnet import-nnunet`."
                )
        plans = Plans.load(folder / PLANS_FILE)
        dataset_json = DatasetJson.load(folder / DATASET_JSON_FILE)
        name = configuration or _configuration_of(folder, plans)
        plans.configuration(name)  # a clear error if unknown
        return cls(folder, plans, dataset_json, name)

    # ----- facts -------------------------------------------------------------------------------------
    @property
    def configuration(self) -> ConfigurationPlan:
        return self.plans.configuration(self.configuration_name)

    @property
    def regions(self) -> bool:
        return self.dataset_json.has_regions

    @property
    def cascade_label_values(self) -> list[int]:
        """Label values one-hot encoded as extra input channels for a cascade stage (none otherwise)."""
        if self.configuration.previous_stage is None:
            return []
        return cascade_label_values(self.dataset_json)

    @property
    def num_input_channels(self) -> int:
        return self.dataset_json.num_channels + len(self.cascade_label_values)

    @property
    def num_outputs(self) -> int:
        return self.dataset_json.num_segmentation_heads

    def training_orientation(self) -> str | None:
        """The orientation code (``"LPS"``) shared by the training cases, from ``fingerprint.json``; None when the
        folder has no fingerprint, the data are 2D, or the training cases were stored in mixed orientations."""
        path = self.folder / FINGERPRINT_FILE
        if not path.is_file():
            return None
        try:
            return Fingerprint.load(path).training_orientation()
        except AutoSegNetError as error:
            log.warning("Cannot read the training orientation from %s: %s", path, error)
            return None

    def postprocessing(self) -> dict[str, Any] | None:
        """The determined postprocessing rules (``postprocessing.json``), or None."""
        path = self.folder / POSTPROCESSING_FILE
        return read_json(path) if path.is_file() else None

    # ----- folds and checkpoints ---------------------------------------------------------------------
    def available_folds(self, checkpoint: str = "final") -> list[str]:
        """Folds (``"0"``, ..., ``"all"``) that have ``checkpoint_<checkpoint>.pth``, numbers first."""
        return folds_with_checkpoint(self.folder, checkpoint)

    def checkpoint_path(self, fold: str, checkpoint: str = "final") -> Path:
        path = checkpoint_path(self.folder, fold, checkpoint)
        if not path.is_file():
            have = self.available_folds(checkpoint)
            raise AutoSegNetError(
                f"{path} does not exist. Folds with {path.name}: {', '.join(have) or 'none'}"
                f"{' (is training finished? try --checkpoint best or latest)' if checkpoint == 'final' else ''}."
            )
        return path

    def load_checkpoint(self, fold: str, checkpoint: str = "final") -> dict[str, Any]:
        """The checkpoint dict of one fold (our own format, plain data and tensors; loaded on the CPU)."""
        return read_checkpoint(self.checkpoint_path(fold, checkpoint), required=("network_weights",))

    def build_network(self) -> nn.Module:
        """The configuration's network, without deep supervision and without initialisation."""
        from AutoSegNetLib.network import build_network

        return build_network(
            self.configuration.network, self.num_input_channels, self.num_outputs, deep_supervision=False,
            initialize=False,
        )

    def load_network(self, fold: str, checkpoint: str = "final") -> tuple[nn.Module, list[int] | None]:
        """The trained network of ``fold`` in eval mode, and the mirror axes it allows (None: no mirroring)."""
        data = self.load_checkpoint(fold, checkpoint)
        network = self.build_network()
        try:
            network.load_state_dict(data["network_weights"])
        except RuntimeError as error:
            raise AutoSegNetError(
                f"The weights in {self.checkpoint_path(fold, checkpoint)} do not fit the network planned in "
                f"{self.folder / PLANS_FILE} ({self.configuration_name}): {str(error).splitlines()[0]}"
            ) from None
        network.eval()
        ndim = self.configuration.ndim
        mirror_axes = data.get("inference_allowed_mirroring_axes", list(range(ndim)))
        if mirror_axes is None:
            return network, None
        usable = [int(a) for a in mirror_axes if 0 <= int(a) < ndim]
        if len(usable) != len(mirror_axes):
            log.warning("%s: mirror axes %s include axes a %dD network does not have; using %s.",
                        self.checkpoint_path(fold, checkpoint), list(mirror_axes), ndim, usable)
        return network, usable


def _configuration_of(folder: Path, plans: Plans) -> str:
    parsed = parse_model_folder_name(folder.name)
    if parsed is not None and parsed[1] in plans.configurations:
        return parsed[1]
    for checkpoint in sorted(folder.glob(f"{FOLD_FOLDER_GLOB}/{CHECKPOINT_FILE_GLOB}")):
        data = read_checkpoint(checkpoint)
        if isinstance(data, dict) and data.get("configuration") in plans.configurations:
            return str(data["configuration"])
    if len(plans.configurations) == 1:
        return next(iter(plans.configurations))
    raise AutoSegNetError(
        f"Cannot tell which configuration {folder} holds: its name is not AutoSegNet__<plans>__<configuration> and "
        f"no checkpoint names one. Pass the configuration explicitly (one of {', '.join(plans.configurations)})."
    )
