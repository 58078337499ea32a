"""The one exception type the CLI turns into a one-line message and exit status 2."""


class UserError(Exception):
    """Bad input or an unusable environment: the message says what was wrong and what to do."""
