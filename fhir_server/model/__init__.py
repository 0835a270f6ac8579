"""The FHIR R4 information model as the server sees it: resource types, element tables, parsing."""
