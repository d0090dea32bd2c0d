"""The one exception type users see: a clear sentence naming what is wrong and what to do."""


class DeepenError(Exception):
    """Bad input or an impossible request (unknown model, too few anchors, a matrix that won't fit...).

    Raised with a single message meant for the user; the CLI prints it as one line and exits with 2.
    """


class TaskError(DeepenError, ValueError):
    """An unknown task or split, or unusable task data (the message names file and line)."""


class TaskDataNotFoundError(DeepenError, FileNotFoundError):
    """A task's data files are not where the data dir says (the message names the path)."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (third-party messages can run to pages), '' when it has none."""
    return (str(exc).splitlines() or [""])[0]
