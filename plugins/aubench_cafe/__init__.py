"""CAFE-style generalizable AU detection (Zhang et al., "Generalizable Facial Expression Recognition", ECCV 2024)."""
__version__ = "0.1.0"
