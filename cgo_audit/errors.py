"""The one exception the CLI turns into a one-line error and exit status 2."""


class AuditError(Exception):
    """The audit could not run: the message is shown to the user as is."""
