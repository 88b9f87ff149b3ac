"""The one error every encoder module raises for a researcher's mistake, in a module of its own so that the
folder format, the base class, the backends and the loaders can all raise it without importing each other."""
from __future__ import annotations


class EncoderError(ValueError):
    """A spec, file or package a researcher supplied is wrong; the message names the problem and the fix."""
