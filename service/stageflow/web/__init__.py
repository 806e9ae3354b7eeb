"""The dashboard: server-rendered pages over the same services and access rule as the API."""
