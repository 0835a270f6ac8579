"""HL7 v2 door: IHE PAM France ADT and CI-SIS MDM messages over MLLP and HTTP."""

DOOR = "hl7v2"  # this door's name in the inbound message journal and in Context.source
