"""The one exception type for bad user input.

Every problem a user can cause (unknown operation, impossible fraction, malformed table, corrupt
checkpoint, ...) is raised as :class:`ConfigError` with a one-line message naming the problem.
The command-line entry points turn it into that line on stderr and exit code 2.
"""


class ConfigError(ValueError):
    """Invalid user input; the message is one line that names the problem."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class Stopped(Exception):
    """A sweep stopped by a signal (SIGTERM from a scheduler or a preemptible VM, SIGINT from
    Ctrl-C) after saving a checkpoint at the step it had reached. The entry points print
    `message` and exit with 128 + the signal number."""

    def __init__(self, signum: int, step: int):
        import signal

        self.signum, self.step = int(signum), int(step)
        name = signal.Signals(self.signum).name
        super().__init__(f"stopped by {name} at step {self.step}; the checkpoint and metrics "
                         f"up to it are saved; continue with --resume")
