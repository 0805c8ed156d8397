"""FAN-Trans (Yang et al., WACV 2023) as a bundled aubench plugin."""
__version__ = "0.1.0"
