"""The `tallybook` command line (see tallybook.cli.main)."""
