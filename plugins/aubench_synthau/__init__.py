"""SynthAU datasets and protocols, as a bundled aubench plugin."""
__version__ = "0.1.0"
