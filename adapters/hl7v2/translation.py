"""What translating one message needs: the message, the FHIR interactions it runs (all in the
message's unit of work, through the engine: validation, versioning, indexing and the outbox
apply as for any door) and the rules that turn HL7 values into FHIR ones."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from functools import cached_property
from typing import Any

import orjson

from adapters.hl7v2.er7 import Field, Message, Segment
from adapters.hl7v2.identifiers import Authorities, Authority
from adapters.hl7v2.timestamps import Moment, moment
from fhir_server.engine.engine import Engine
from fhir_server.engine.interaction import Context, Interaction, Kind, Params
from fhir_server.engine.lookup import read
from fhir_server.engine.unit_of_work import UnitOfWork


class Interactions:
    """The FHIR interactions of one message, run by the engine inside its unit of work."""

    def __init__(self, engine: Engine, uow: UnitOfWork, context: Context) -> None:
        self.engine = engine
        self.uow = uow
        self.context = context

    def _run(self, interaction: Interaction) -> Any:
        return self.engine.run(self.uow, interaction, self.context)

    def read(self, type_: str, id_: str) -> dict[str, Any] | None:
        """The current content of a resource; None when unknown or deleted."""
        return read(self.engine, self.uow, self.context, f"{type_}/{id_}")

    def find(self, type_: str, params: Params) -> str | None:
        """The id of the one resource matching the criteria, None if none; several is a 412.
        On PostgreSQL the criteria are locked until commit (`Engine.matches`): two messages
        about the same patient, stay or document are serialised, so each reads what the
        other wrote before changing it (SQLite serialises every writer)."""
        found = self.engine.matches(self.uow, type_, params, f"{type_} lookup", self.context)
        return found[0] if found else None

    def search(self, type_: str, params: Params) -> list[dict[str, Any]]:
        """The resources of a search (matches and included ones), as dicts."""
        outcome = self._run(Interaction(Kind.SEARCH_TYPE, type_, params=params))
        bundle = orjson.loads(orjson.dumps(outcome.resource))
        return [entry["resource"] for entry in bundle.get("entry", [])]

    def create(self, type_: str, resource: dict[str, Any]) -> str:
        return self._run(Interaction(Kind.CREATE, type_, resource=resource, method="POST")).id

    def write(
        self, type_: str, id_: str, resource: dict[str, Any], if_match: str | None = None
    ) -> None:
        """Create or update `type_/id_` (no new version when nothing changed); with
        `if_match`, only if it is still at that version (else a 412)."""
        resource["id"] = id_
        interaction = Interaction(
            Kind.UPDATE, type_, id_, resource=resource, if_match=if_match, method="PUT"
        )
        self._run(interaction)

    def create_unless_found(self, type_: str, resource: dict[str, Any], params: Params) -> str:
        """The id of the resource matching `params`, created from `resource` if none does."""
        interaction = Interaction(
            Kind.CREATE, type_, resource=resource, if_none_exist=params, method="POST"
        )
        return self._run(interaction).id


@dataclass
class Translation:
    """One message being turned into FHIR interactions."""

    message: Message
    fhir: Interactions
    authorities: Authorities
    zone: tzinfo

    @cached_property
    def facility(self) -> Authority:
        """The facility the message speaks for: PV1-3.4 (the location's facility), else the
        sending facility MSH-4. Identifiers without an authority are this facility's."""
        pv1 = self.message.first("PV1")
        if pv1 is not None and pv1(3, 4):
            return Authority.of(pv1.field(3), 4)
        header = self.message.header
        return Authority(header.value(4, 1), header.value(4, 2), header.value(4, 3))

    def moment(self, segment: Segment, position: int, component: int = 1) -> Moment | None:
        return moment(segment(position, component), self.zone, segment.at(position, component))

    def identifier(
        self, field: Field, authority: Authority, type_code: str | None = None
    ) -> dict[str, Any]:
        return self.authorities.identifier(field(1), authority, self.facility, type_code)

    @property
    def occurred(self) -> Moment | None:
        """When the event happened: EVN-6, else EVN-2, else the sending time MSH-7."""
        evn = self.message.first("EVN")
        if evn is not None:
            found = self.moment(evn, 6) or self.moment(evn, 2)
            if found:
                return found
        return moment(self.message.header.value(7), self.zone)
