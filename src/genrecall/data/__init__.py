"""Data: table contracts (schema), the synthetic marketplace, real judged sets, validation, splits."""
