"""The PATCH interaction's two patch formats: JSON Patch (RFC 6902) and FHIRPath Patch."""
