"""Trained models as files: export to / install from a checked zip, import nnU-Net v2 model folders.

Entry points: :func:`export_model`, :func:`install_model`, :func:`import_nnunet_model`.
"""

from AutoSegNetLib.models.export import export_model
from AutoSegNetLib.models.install import install_model
from AutoSegNetLib.models.manifest import Manifest, ModelEntry
from AutoSegNetLib.models.nnunet_import import import_nnunet_model, plans_from_nnunet

__all__ = ["Manifest", "ModelEntry", "export_model", "import_nnunet_model", "install_model", "plans_from_nnunet"]
