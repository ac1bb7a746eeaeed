"""replicator: move a live PostgreSQL or MySQL/MariaDB database with near-zero downtime."""

__version__ = "0.1.0"
