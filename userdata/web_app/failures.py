"""How a call to a database can fail, and what each failure tells the caller.

The app answers a client honestly from these: `Unavailable` means nothing was done (a write
can be refused with "not saved"), `OutcomeUnknown` means a write was sent and its answer lost,
`KeyReused` means an idempotency key came back with another text. The helpers below read a
PyMySQL error: MySQL's own error codes, and whether the connection rather than the statement
failed. They change when the database driver or MySQL's error codes do.
"""

ACCESS_DENIED, NO_SUCH_TABLE, DUPLICATE_ENTRY = 1045, 1146, 1062


class Unavailable(Exception):  # the database did not do it, for certain
    pass


class NotTried(Unavailable):  # not even sent: breaker open, or no slot
    pass


class OutcomeUnknown(Exception):
    pass


class KeyReused(Exception):
    pass


def code_of(error):
    return error.args[0] if error.args and isinstance(error.args[0], int) else 0


def lost_connection(error):
    """The connection failed, not the statement: did the server run it? Unknown."""
    return not 0 < code_of(error) < 2000 and not code_of(error) >= 3000  # CR_* or no code


def timed_out(error):
    return isinstance(error.__cause__ or error.__context__, TimeoutError)


def failed(host, error):
    return Unavailable(f"{host}: {error.args[-1] if error.args else error!r}")
