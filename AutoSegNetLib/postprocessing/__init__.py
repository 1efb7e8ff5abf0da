"""Connected-component postprocessing: keep the largest component, only where it improves cross-validation Dice.

Stages: :func:`~AutoSegNetLib.postprocessing.determine.determine_postprocessing` decides the rules from
cross-validation predictions (it scores them with :mod:`AutoSegNetLib.evaluation`);
:func:`apply_postprocessing` applies them to a label map (prediction calls it, so :mod:`.rules` imports neither
evaluation nor inference); :func:`~AutoSegNetLib.postprocessing.folder.apply_to_folder` applies them to a folder
of label maps. Only the pure rules are re-exported here, so importing this package stays as light as prediction
needs.
"""

from AutoSegNetLib.postprocessing.rules import (
    KEEP_LARGEST,
    POSTPROCESSING_FORMAT,
    POSTPROCESSING_VERSION,
    apply_postprocessing,
    check_rules,
    keep_largest_component,
)

__all__ = [
    "KEEP_LARGEST",
    "POSTPROCESSING_FORMAT",
    "POSTPROCESSING_VERSION",
    "apply_postprocessing",
    "check_rules",
    "keep_largest_component",
]
