"""The HTTP control plane: reads from the control database, commands published to Kafka."""
