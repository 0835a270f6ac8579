"""Wire formats: FHIR JSON (with decimal precision kept) and FHIR XML."""
