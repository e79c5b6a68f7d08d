"""The panel's views. Each registers itself in `VIEWS`; keys 1–9 and 0 switch between them.

Views for MCP, Backends and Plugins arrive with their own issues; until then they are simply
not registered, so nothing fake is shown.
"""
