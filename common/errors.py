"""The one error type that CLIs turn into a one-line message (exit code 2)."""


class UserError(Exception):
    """Bad input from the user: a path, a flag value, a manifest. Printed as one line."""


class ManifestError(UserError):
    """A manifest that cannot be read: missing or mistyped column, newer schema, not Parquet."""
