"""Imports the CLI modules that live outside main.py, so their commands register on `app`."""
