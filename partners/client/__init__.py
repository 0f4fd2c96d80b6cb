"""The partner kit's verified sync client and its local state: transport, verifier, sync, mirror, schedule,
webhook receiver, OAuth session, configuration, logs, report queue and the matcher's local index."""
