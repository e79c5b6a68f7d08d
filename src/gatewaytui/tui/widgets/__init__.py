"""Reusable widgets of the TUI (tables, headers, banners); no gateway knowledge here."""
