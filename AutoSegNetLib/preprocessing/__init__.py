"""Preprocessing: crop, normalise, resample (and the exact inverse for prediction)."""
