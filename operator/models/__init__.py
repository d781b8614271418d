"""Data only: configuration, fault specs, records, errors. No I/O here."""
