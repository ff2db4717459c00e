"""The one exception type for bad user input.

The CLI turns an `EvopruneError` into a single line on stderr and exit code 2; the Python API
lets it propagate. Messages say where (file, field) and what was expected.
"""


class EvopruneError(ValueError):
    """Bad input from the user: a name, a value, a file. Its message is one line."""
