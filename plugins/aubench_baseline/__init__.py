"""The baseline aubench plugin: a timm CNN with a linear multi-label head (VMNC) and standard losses."""
__version__ = "0.1.0"
