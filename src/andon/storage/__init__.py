"""Schema, migrations, historian stores (SQLite, PostgreSQL) and the single historian writer.

The only package that imports SQLAlchemy, psycopg and alembic. This module imports nothing so
that ``andon.storage.types``/``codec``/``store`` stay usable without loading a database driver.
"""

__all__: list[str] = []
