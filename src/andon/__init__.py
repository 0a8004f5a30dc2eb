"""Andon: an open-source MES with a light SCADA core."""

__all__ = ["__version__"]

__version__ = "0.1.0"
