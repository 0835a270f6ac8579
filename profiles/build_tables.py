"""Rebuild the compact tables of `profiles/tables/` from the FHIR R4 core definitions.

Run from the project root: `python -m profiles.build_tables ../shared/fixtures/fhir-r4`.
The server reads only the tables, never the definitions, so it runs without them; the test
`tests/profiles/test_tables.py` regenerates the tables in memory and compares them whenever the
definitions are present.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from profiles import TABLES_DIR

ABSTRACT_TYPES = {"Resource", "DomainResource"}
# R4B rewrote these resources: their R4B models do not accept R4 instances, so they are not served.
RESHAPED_IN_R4B = {"Evidence", "EvidenceVariable"}


def _modelled(type_name: str) -> bool:
    try:
        get_fhir_model_class(type_name)
    except ValueError:
        return False
    return True


def resource_types(definitions: Path) -> dict[str, Any]:
    bindings = json.loads((definitions / "required-bindings.json").read_text())
    codes = [
        c["code"] for c in bindings["valueSets"]["http://hl7.org/fhir/ValueSet/resource-types"]
    ]
    concrete = [c for c in codes if c not in ABSTRACT_TYPES]
    return {
        "source": "FHIR R4 4.0.1 ValueSet resource-types, intersected with fhir.resources.R4B",
        "served": sorted(c for c in concrete if _modelled(c) and c not in RESHAPED_IN_R4B),
        "notModelled": sorted(c for c in concrete if not _modelled(c)),
        "reshapedInR4B": sorted(RESHAPED_IN_R4B),
    }


def build(definitions: Path) -> dict[str, Any]:
    """Table file name → content."""
    return {"resource-types.json": resource_types(definitions)}


def main(definitions: str) -> None:
    for name, table in build(Path(definitions)).items():
        (TABLES_DIR / name).write_text(json.dumps(table, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {TABLES_DIR / name}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/fixtures/fhir-r4")
