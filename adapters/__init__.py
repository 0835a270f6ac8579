"""Adapters: translators from the formats of other systems to FHIR interactions, with their
transports (HL7 v2 over MLLP, CDA documents, MSSanté mail)."""
