"""The one exception type for bad user input.

Every problem a user can cause (unknown operation, impossible fraction, malformed table, corrupt
checkpoint, ...) is raised as :class:`ConfigError` with a one-line message naming the problem.
The command-line entry points turn it into that line on stderr and exit code 2.
"""


class ConfigError(ValueError):
    """Invalid user input; the message is one line that names the problem."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
