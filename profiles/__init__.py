"""Conformance resources and compact fact tables shipped with the server, loaded at start-up."""

from pathlib import Path

PROFILES_DIR = Path(__file__).parent
TABLES_DIR = PROFILES_DIR / "tables"
