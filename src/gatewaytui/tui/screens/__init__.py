"""Modal screens: confirmations, details, help."""
