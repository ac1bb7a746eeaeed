"""The embedded local stack: real PostgreSQL, MariaDB, a Kafka-protocol broker (Tansu) and Kafka
Connect with Debezium, started on 127.0.0.1 under one run directory without Docker.

It lives in the package (not only under deploy/) because the installed `replicator stack` command
and the test suite both drive it. Production uses docker-compose.yml instead; only addresses differ.
"""

from replicator.stack.launcher import LocalStack, StackInfo

__all__ = ["LocalStack", "StackInfo"]
