"""Bulk writes: many rows of one table in one go (COPY on PostgreSQL, one executemany
elsewhere), for the billing run and statement imports."""

from __future__ import annotations

import json
from collections.abc import Callable
from operator import itemgetter
from typing import Any

import psycopg
from sqlalchemy import JSON, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tallybook.db.models import Base


def insert_rows(session: Session, model: type[Base], rows: list[dict[str, Any]]) -> None:
    """Insert rows that all carry every column of the table, in one go.

    PostgreSQL gets COPY: the executemany of an insert sends and executes every row separately,
    which dominated the billing run. Values go through the columns' own bind processing either
    way, so exact decimals, UTC date-times and JSON are stored exactly as a plain insert does.
    """
    if not rows:
        return
    table = model.__table__
    connection = session.connection()
    dialect = connection.dialect
    if dialect.name != "postgresql":
        # Uniform keys make this one executemany of one statement.
        session.execute(insert(table), rows)
        return
    names = list(rows[0])
    converters = [
        (index, convert)
        for index, name in enumerate(names)
        if (convert := _copy_converter(table.c[name].type, dialect)) is not None
    ]
    values_of = itemgetter(*names)
    preparer = dialect.identifier_preparer
    statement = (
        f"COPY {preparer.format_table(table)} "
        f"({', '.join(preparer.quote(name) for name in names)}) FROM STDIN"
    )
    driver_connection = connection.connection.driver_connection
    assert driver_connection is not None
    try:
        with driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                values = list(values_of(row))
                for index, convert in converters:
                    values[index] = convert(values[index])
                copy.write_row(values)
    except psycopg.IntegrityError as error:
        # Bypassing SQLAlchemy also bypasses its exception wrapping; the run relies on it to
        # tell a concurrent run's guard row apart from any other failure.
        raise IntegrityError(statement, None, error) from error


def _copy_converter(column_type: Any, dialect: Dialect) -> Callable[[Any], Any] | None:
    """How a value of the column is written by COPY: as its bind processing gives it, except
    that JSON goes as the text SQLAlchemy's serializer makes (its Jsonb wrapper is slow to
    dump one value at a time)."""
    impl = column_type.dialect_impl(dialect)
    if isinstance(impl, JSON):
        # The serializer SQLAlchemy's JSON type uses: the engine's, else json.dumps.
        serialize = getattr(dialect, "_json_serializer", None) or json.dumps
        if impl.none_as_null:
            return lambda value: None if value is None else serialize(value)
        return serialize  # None is stored as JSON null, as SQLAlchemy stores it
    return impl.bind_processor(dialect)
