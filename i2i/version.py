"""The package version, in one place that imports nothing (setup.cfg and saved configs read it)."""

__version__ = "0.1.0"
