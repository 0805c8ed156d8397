"""A minimal aubench plugin (see CONTRIBUTING.md)."""
__version__ = "0.1.0"
