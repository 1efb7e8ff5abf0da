"""Dataset fingerprint: per-case spacing and shapes, per-channel foreground intensities -> ``fingerprint.json``.

Entry point: :func:`extract_fingerprint`; typed reader/writer: :class:`Fingerprint`.
"""

from AutoSegNetLib.fingerprint.extract import analyze_case, extract_fingerprint
from AutoSegNetLib.fingerprint.format import (
    FINGERPRINT_FILE,
    FINGERPRINT_FORMAT,
    FINGERPRINT_VERSION,
    CaseFingerprint,
    Fingerprint,
    IntensityStatistics,
)
from AutoSegNetLib.fingerprint.intensity import WeightedSample, intensity_statistics, sample_foreground

__all__ = [
    "FINGERPRINT_FILE",
    "FINGERPRINT_FORMAT",
    "FINGERPRINT_VERSION",
    "CaseFingerprint",
    "Fingerprint",
    "IntensityStatistics",
    "WeightedSample",
    "analyze_case",
    "extract_fingerprint",
    "intensity_statistics",
    "sample_foreground",
]
