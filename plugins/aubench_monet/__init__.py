"""MONET and its multi-task baselines (Tallec thesis, chapter 2) as a bundled aubench plugin."""
__version__ = "0.1.0"
