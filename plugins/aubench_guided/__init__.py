"""Guided AU transformers (Tallec thesis, chapter 3) and the ABAW3 multi-label transformer."""
