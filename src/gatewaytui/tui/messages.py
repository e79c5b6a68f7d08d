"""Messages that views, screens and the actions send up to the app, instead of calling it."""

from __future__ import annotations

from textual.message import Message


class PanelStateChanged(Message):
    """Something the header shows changed outside the update stream (a view's follow mode,
    a finished action, the filter): the app rebuilds the header's state."""
