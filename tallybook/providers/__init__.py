"""Adapters to outside services Tallybook calls (payment providers); no database here."""
