"""Label-smoothing losses for multi-label AU detection: VLS, VALS and RHLS (Tallec thesis, chapter 4)."""
__version__ = "0.1.0"
