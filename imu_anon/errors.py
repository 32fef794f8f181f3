"""The root of every error the project raises on purpose.

Each package has its own root (``BridgeError``, ``EdgeRuntimeError``, ``TrainerError``,
``ExportError``) deriving from :class:`ImuAnonError`, so the CLI catches the project's
errors in one place and prints one line instead of a traceback.
"""


class ImuAnonError(Exception):
    """An error with a message that tells the user what to do."""
