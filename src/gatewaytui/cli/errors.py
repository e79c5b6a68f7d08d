"""The command line's user-facing error, in a module of its own so that every command's
module can raise it without importing `main` (which imports them)."""


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit code 2."""
