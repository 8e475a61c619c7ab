"""The one exception type for mistakes a user can make; the CLI turns it into a sentence and exit 2."""


class UserError(Exception):
    """Bad input from the user (path, file, option): the message is one sentence, shown as is."""
