"""The pure billing core: immutable values and pure functions; no I/O, no ORM, no clock."""
