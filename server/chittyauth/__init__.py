"""ChittyAuth: the identity service of the ChittyOS platform."""

from __future__ import annotations

__version__ = "0.1.0"
