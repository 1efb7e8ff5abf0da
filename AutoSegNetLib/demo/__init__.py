"""The embedded default: a small synthetic dataset the engine makes itself, and the demo pipeline."""
