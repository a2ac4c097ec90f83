"""The two kinds of failure the CLI distinguishes by exit status.

Raise these with a message that names the file, field or dataset at fault; the CLI prints
``error: <message>`` on one line and exits with the class's status (no traceback unless --debug).
"""


class PracticumError(Exception):
    """A runtime failure (bad data file, failed download, diverged state): exit status 1."""

    exit_code = 1


class UsageError(PracticumError):
    """A usage or configuration mistake (unknown key, wrong type, unknown name): exit status 2."""

    exit_code = 2
