"""FHIR search: parameters as data, index extraction at write time, SQL at read time."""
