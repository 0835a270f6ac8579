"""Segments hl7apy does not know for the versions the door receives, given to hl7apy so that
it parses them with typed fields (and so keeps every component at its position):

- ZBE (IHE PAM France: the movement) and ZFA (IHE PAM France: the DMP status), defined here
  from IHE PAM France 2.11 with the data types of the message's version;
- PRT, which CI-SIS MDM (2.6) and PAM France (2.5) pre-adopt from a later version: parsed with
  hl7apy's definition of the most recent version it ships.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import hl7apy

PRT_VERSION = "2.8.2"

_ZBE = (
    ("EI", "MOVEMENT_ID"),
    ("TS", "START_OF_MOVEMENT"),
    ("TS", "END_OF_MOVEMENT"),
    ("ID", "ACTION_ON_THE_MOVEMENT"),
    ("ID", "HISTORIC_MOVEMENT_INDICATOR"),
    ("ID", "ORIGINAL_TRIGGER_EVENT_CODE"),
    ("XON", "WARD_OF_MEDICAL_RESPONSIBILITY"),
    ("XON", "WARD_OF_CARE_RESPONSIBILITY"),
    ("CWE", "NATURE_OF_MOVEMENT"),
)
_ZFA = (
    ("ID", "DMP_STATUS"),
    ("TS", "DMP_STATUS_DATE"),
    ("TS", "DMP_CLOSING_DATE"),
    ("ID", "ESTABLISHMENT_ACCESS_AUTHORIZATION"),
    ("ID", "EMERGENCY_ACCESS_OPPOSITION"),
    ("ID", "REGULATION_ACCESS_OPPOSITION"),
    ("ID", "PATIENT_INFORMED"),
    ("ID", "DMP_OPPOSITION"),
    ("ID", "DIGITAL_SPACE_STATUS"),
    ("TS", "DIGITAL_SPACE_STATUS_DATE"),
    ("ID", "DIGITAL_SPACE_OPPOSITION"),
    ("TS", "DIGITAL_SPACE_OPPOSITION_DATE"),
)
Z_SEGMENTS = {"ZBE": _ZBE, "ZFA": _ZFA}


@cache
def z_segment_reference(name: str, version: str) -> tuple[Any, ...]:
    """The hl7apy reference structure of a French Z segment in a library version."""
    library = hl7apy.load_library(version)
    children = []
    for position, (datatype, long_name) in enumerate(Z_SEGMENTS[name], 1):
        if datatype == "TS" and datatype not in library.DATATYPES_STRUCTS:
            datatype = "DTM"  # hl7apy's 2.6 library has the time stamps as DTM
        if datatype in library.DATATYPES_STRUCTS:
            ref = ("sequence", library.DATATYPES_STRUCTS[datatype], datatype, long_name, None, -1)
        else:
            ref = ("leaf", None, datatype, long_name, None, -1)
        children.append((f"{name}_{position}", ref, (0, -1), "FIE"))
    return ("sequence", tuple(children))
