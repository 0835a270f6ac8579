"""A FHIR R4 server for the care pathways of French CPTS."""

__version__ = "0.1.0"
