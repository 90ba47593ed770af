"""File formats at the edge of Tallybook: adapters that read or write documents of other systems."""
