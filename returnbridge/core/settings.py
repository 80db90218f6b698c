"""The settings sections the pure core defines (gathered by returnbridge/settings.py)."""

from returnbridge.core.links import LinkSettings

__all__ = ["LinkSettings"]
