"""The REST API (FastAPI) under /v1: parse, call a service, render. No queries here."""
