"""The payment domain: pure values, validation and errors (no I/O)."""
