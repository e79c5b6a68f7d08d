"""gatewaytui: a terminal control panel for LLM gateway operators, with its own gateway core."""

__version__ = "0.1.0"
