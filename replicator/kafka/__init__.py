"""All confluent-kafka client code lives in this package."""
