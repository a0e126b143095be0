"""The envnet server: REST API over the state store (stations, alerts, webhooks)."""
