"""Kafka: client settings, the consumer source, offsets, dead letters, the producer and
the embedded broker for tests and the demo. Import the modules themselves; this package
imports nothing, so `engine.adapters.kafka.status` users do not pull in aiokafka."""
