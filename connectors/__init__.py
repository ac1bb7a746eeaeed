"""Debezium connector templates, their rendering from the migration config, and the Kafka Connect
REST client that applies them. Imports go one way: connectors -> replicator (config, model, dialects,
kafka, errors), never the reverse except from replicator.cli and replicator.service.
"""
