"""BP4D and DISFA readers, preparation and standard protocols, as a bundled aubench plugin."""
__version__ = "0.1.0"
