"""Install a model zip of either kind: one made by ``autosegnet export-model`` (``manifest.json`` at its root;
:func:`~AutoSegNetLib.models.install.install_model`) or one made by nnU-Net v2's ``nnUNetv2_export_model_to_zip``
(``DatasetXXX_Name/<Trainer>__<Plans>__<configuration>/...``;
:func:`~AutoSegNetLib.models.nnunet_zip.install_nnunet_zip`).

Entry point: :func:`install_zip`; :func:`zip_kind` tells the kind without installing. The installers (and with them
PyTorch) are imported when a zip is installed, so that the catalogue and downloads stay light to import.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.models.manifest import MANIFEST_NAME
from AutoSegNetLib.models.sizes import DEFAULT_MAX_SIZE
from AutoSegNetLib.utils.stop import StopRequest
from AutoSegNetLib.workspace import Workspace

#: The kinds of model zips, with how they are named to the user.
ZIP_KINDS = {
    "autosegnet": "AutoSegNet model zip (autosegnet export-model)",
    "nnunet": "nnU-Net v2 export (nnUNetv2_export_model_to_zip), imported",
}


@dataclass(frozen=True)
class InstallOptions:
    """How to install: replace installed models (``force``), the most bytes a zip may unpack to (``max_size``),
    and whether nnU-Net checkpoints may hold arbitrary Python objects (``trust_checkpoints``: loading them runs code
    from the file; AutoSegNet zips never need it and always refuse such checkpoints)."""

    force: bool = False
    max_size: int = DEFAULT_MAX_SIZE
    trust_checkpoints: bool = False


@dataclass(frozen=True)
class Installed:
    """What was installed: the zip's ``kind`` (a key of :data:`ZIP_KINDS`) and the model folders."""

    kind: str
    folders: list[Path] = field(default_factory=list)

    @property
    def description(self) -> str:
        return ZIP_KINDS[self.kind]


def zip_kind(zip_path: str | Path) -> str:
    """``"autosegnet"`` or ``"nnunet"`` for a model zip; an error for anything else."""
    zip_path = Path(zip_path)
    if not zip_path.is_file() or not zipfile.is_zipfile(zip_path):
        raise AutoSegNetError(
            f"{zip_path} is not a zip file; install zips made by `autosegnet export-model` or nnU-Net's "
            "`nnUNetv2_export_model_to_zip`."
        )
    from AutoSegNetLib.models.nnunet_zip import is_nnunet_export

    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
    if MANIFEST_NAME in names:
        return "autosegnet"
    if is_nnunet_export(names):
        return "nnunet"
    raise AutoSegNetError(
        f"{zip_path} is not a model zip: it has no {MANIFEST_NAME} (zips made by `autosegnet export-model`) and no "
        "DatasetXXX_Name/<Trainer>__<Plans>__<configuration>/plans.json (zips made by nnU-Net's "
        "`nnUNetv2_export_model_to_zip`)."
    )


def install_zip(zip_path: str | Path, workspace: Workspace, options: InstallOptions | None = None,
                stop: StopRequest | None = None) -> Installed:
    """Detect the kind of ``zip_path`` and install it into ``workspace.results/<dataset>/``."""
    from AutoSegNetLib.models.install import install_model
    from AutoSegNetLib.models.nnunet_zip import install_nnunet_zip

    options = options or InstallOptions()
    kind = zip_kind(zip_path)
    if kind == "autosegnet":
        folders = install_model(zip_path, workspace, force=options.force, stop=stop, max_size=options.max_size)
    else:
        folders = install_nnunet_zip(zip_path, workspace, force=options.force,
                                     trust_checkpoints=options.trust_checkpoints, stop=stop, max_size=options.max_size)
    return Installed(kind, list(folders))
