"""The one exception type users see: a clear sentence naming what is wrong and what to do."""


class DeepenError(Exception):
    """Bad input or an impossible request (unknown model, too few anchors, a matrix that won't fit...).

    Raised with a single message meant for the user; the CLI prints it as one line and exits with 2.
    """
