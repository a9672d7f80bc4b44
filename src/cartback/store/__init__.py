"""Storage: SQLAlchemy Core tables, the group-commit writer, and one repository module per record."""
