"""Process plumbing: settings, logging, metrics, health endpoints and the composition root."""
