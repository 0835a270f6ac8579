"""The CPTS care pathways on the FHIR server: definitions, `$apply`, the Task lifecycle,
progression, triggers, deadlines and indicators (docs/pathways.md)."""
