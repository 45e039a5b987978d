"""What every cloud service shares: settings, database, event bus, outbox/inbox, cache, app factory,
supervision, and the service spec the registry lists (see cloud/README.md)."""
