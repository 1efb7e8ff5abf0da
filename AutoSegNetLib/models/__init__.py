"""Trained models as files: export to / install from a checked zip (ours or nnU-Net v2's export), import nnU-Net v2
model folders, download zips (resumable, checked), the pretrained-model catalogue, plans moved between datasets.

Entry points: :func:`export_model`, :func:`install_model` / :func:`install_zip` (either kind of zip),
:func:`import_nnunet_model`, :func:`download_and_install`, :func:`load_index` / :func:`install_entry`,
:func:`.move_plans.move_plans` (a submodule of the same name: import it from there).

The names are imported when first used (PEP 562), so that reading the catalogue (:mod:`.catalogue`) or
downloading (:mod:`.download`) does not import PyTorch, e.g. in 3D Slicer's GUI process.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the module of this package that defines it
_EXPORTS = {
    "CatalogueEntry": "catalogue", "ModelIndex": "catalogue", "entries": "catalogue", "install_entry": "catalogue",
    "load_index": "catalogue", "DownloadRequest": "download", "download_and_install": "download",
    "export_model": "export", "export_model_folder": "export", "install_model": "install",
    "InstallOptions": "install_any", "Installed": "install_any",
    "install_zip": "install_any", "zip_kind": "install_any", "Manifest": "manifest", "ModelEntry": "manifest",
    "import_nnunet_model": "nnunet_import", "plans_from_nnunet": "nnunet_import",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
