"""What a principal may see and do, decided per resource type and, for patient data, per
patient, in SQL: the search adds `Access.condition` to every query that returns resources.

A type is reached in one of four modes: every resource of it (`ALL`), only those of the
patients the caller is related to (`RELATED`), only the launch patient's (`PATIENT`), or none.
The relation (docs/security.md) is read from the data at the time of the query, in the same
statement, so a change of care team or of consent applies to the next request:

- members of the patient's active CareTeams (as Practitioner, or a PractitionerRole of theirs);
- owners and requesters of one of the patient's Tasks;
- coordinators: the patients of the CarePlans whose author is an Organization they hold an
  active PractitionerRole in (their CPTS);
- professionals the patient consented to share with (Consent category INFA naming them);
- minus the patients who oppose exchange (active Consent category IDSCL, to everyone or naming
  the caller, over a period covering now). Their Consents stay visible, so that the opposition
  can be withdrawn.

A resource of a patient-data type is visible when every patient it belongs to (its Patient
compartment references) is visible; one that belongs to no patient is visible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from sqlalchemy import (
    ColumnElement,
    FromClause,
    and_,
    exists,
    false,
    literal,
    not_,
    or_,
    select,
    union,
)

from fhir_server.search.compartment import compartment_params
from fhir_server.search.sql import RESOURCE, TABLES
from fhir_server.security.principal import COORDINATOR, Principal
from fhir_server.security.roles import OPEN, ROLE_TABLE, Role, patient_data

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
OPPOSITION = "IDSCL"  # information disclosure: the patient opposes exchange
SHARING = "INFA"  # information access: the patient consents to share with someone


class Mode(Enum):
    ALL = "all"
    RELATED = "related"
    PATIENT = "patient"


Condition = ColumnElement[bool]


class Access:
    """One principal's rights: modes per type and permission, and visibility as SQL."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal
        self.roles: list[Role] = [ROLE_TABLE[r] for r in sorted(principal.roles) if r in ROLE_TABLE]
        self.relation = any(r.relation for r in self.roles)
        self._modes: dict[tuple[str, str], Mode | None] = {}

    # -- types -----------------------------------------------------------------------------

    def mode(self, type_: str, permission: str) -> Mode | None:
        """How the principal reaches `type_` for `permission` (c, r, u, d, s): the token's
        scopes and the roles must both grant it."""
        key = (type_, permission)
        if key not in self._modes:
            self._modes[key] = self._mode(type_, permission)
        return self._modes[key]

    def _mode(self, type_: str, permission: str) -> Mode | None:
        roles = [r for r in self.roles if r.allows(type_, permission)]
        if not roles:
            return None
        p = self.principal
        contexts = p.scopes.contexts(type_, permission)
        if "system" in contexts and p.is_system:
            return Mode.ALL
        if "user" in contexts and p.fhir_user is not None:
            if type_ in OPEN or type_ not in patient_data():
                return Mode.ALL
            return Mode.RELATED if all(r.relation for r in roles) else Mode.ALL
        if "patient" in contexts and p.patient is not None:
            return Mode.ALL if type_ in OPEN else Mode.PATIENT
        return None

    def operation(self, name: str) -> bool:
        return any(name in r.operations for r in self.roles)

    # -- visibility ------------------------------------------------------------------------

    def condition(self, r: FromClause, types: Sequence[str]) -> Condition | None:
        """Rows of `r` (of `types`) the principal may read; None: all of them."""
        modes = {t: self.mode(t, "r") for t in types}
        if all(m is Mode.ALL for m in modes.values()):
            return None
        parts: list[Condition] = []
        whole = [t for t, m in modes.items() if m is Mode.ALL]
        if whole:
            parts.append(r.c.type.in_(whole))
        for t, m in modes.items():
            if m in (Mode.RELATED, Mode.PATIENT):
                parts.append(and_(r.c.type == t, self._belongs(r, t, m)))
        return or_(*parts) if parts else false()

    def _belongs(self, r: FromClause, type_: str, mode: Mode) -> Condition:
        """A resource of `type_` whose patients are all visible."""
        allowed, denied = self._patients(mode, with_opposition=type_ != "Consent")
        if type_ == "Patient":
            ok = r.c.id.in_(allowed)
            return ok if denied is None else and_(ok, r.c.id.not_in(denied))
        codes = compartment_params("Patient", type_) or []
        if not codes:
            return false()
        x = TABLES["reference"].alias()
        outside = x.c.target_id.not_in(allowed)
        if denied is not None:
            outside = or_(outside, x.c.target_id.in_(denied))
        return not_(
            exists(
                select(x.c.resource_pk).where(
                    x.c.resource_pk == r.c.pk,
                    x.c.param.in_(codes),
                    x.c.target_type == "Patient",
                    outside,
                )
            )
        )

    def _patients(self, mode: Mode, with_opposition: bool) -> tuple[Any, Any | None]:
        """(ids of the patients visible through the relation, ids of those opposing exchange,
        or None when oppositions do not apply)."""
        if mode is Mode.PATIENT:
            return select(literal(self.principal.patient)), None
        me_type, _, me_id = (self.principal.fhir_user or "/").partition("/")
        my_roles = _ids_of("PractitionerRole", "practitioner", "Practitioner", me_id)

        def me(m: FromClause) -> Condition:
            if me_type != "Practitioner":
                return and_(m.c.target_type == me_type, m.c.target_id == me_id)
            return or_(
                and_(m.c.target_type == "Practitioner", m.c.target_id == me_id),
                and_(m.c.target_type == "PractitionerRole", m.c.target_id.in_(my_roles)),
            )

        related = [
            _targets(
                "CareTeam",
                "patient",
                _referencing("CareTeam", ("participant",), me),
                _having("CareTeam", "status", None, "active"),
            ),
            _targets("Task", "patient", _referencing("Task", ("owner", "requester"), me)),
            _targets("Consent", "patient", *self._consents(SHARING, me, everyone=False)),
        ]
        if COORDINATOR in self.principal.roles and me_type == "Practitioner":
            organizations = _cpts_of(my_roles)
            related.append(
                _targets(
                    "CarePlan",
                    "patient",
                    _referencing(
                        "CarePlan",
                        ("author",),
                        lambda m: and_(
                            m.c.target_type == "Organization", m.c.target_id.in_(organizations)
                        ),
                    ),
                )
            )
        denied = None
        if with_opposition:
            denied = _targets("Consent", "patient", *self._consents(OPPOSITION, me, everyone=True))
        return union(*related), denied

    def _consents(self, category: str, me: RowTest, everyone: bool) -> list[RowFilter]:
        """Filters of Consents: active, of `category` (v3 ActCode), over a period covering now,
        naming the caller, or (`everyone`) naming no one."""
        period, moment = TABLES["date"].alias(), datetime.now(UTC)
        out_of_period = select(period.c.resource_pk).where(
            period.c.type == "Consent",
            period.c.param == "period",
            or_(period.c.low > moment, period.c.high <= moment),
        )
        actor = TABLES["reference"].alias()
        naming_me = select(actor.c.resource_pk).where(
            actor.c.type == "Consent", actor.c.param == "actor", me(actor)
        )
        naming_anyone = select(actor.c.resource_pk).where(
            actor.c.type == "Consent", actor.c.param == "actor"
        )

        def addressed(p: FromClause) -> Condition:
            if everyone:
                return or_(p.c.resource_pk.in_(naming_me), p.c.resource_pk.not_in(naming_anyone))
            return p.c.resource_pk.in_(naming_me)

        return [
            _having("Consent", "status", None, "active"),
            _having("Consent", "category", ACT_CODE, category),
            lambda p: p.c.resource_pk.not_in(out_of_period),
            addressed,
        ]


# Conditions on index rows `p` (of the reference table), on the resource they belong to.
RowTest = Callable[[FromClause], Condition]
RowFilter = Callable[[FromClause], Condition]


def _targets(type_: str, param: str, *filters: RowFilter) -> Any:
    """Ids of the Patients that `type_` resources passing `filters` reference by `param`."""
    p = TABLES["reference"].alias()
    return select(p.c.target_id).where(
        p.c.type == type_,
        p.c.param == param,
        p.c.target_type == "Patient",
        *[f(p) for f in filters],
    )


def _referencing(type_: str, params: tuple[str, ...], target: RowTest) -> RowFilter:
    """Resources of `type_` with a `params` reference passing `target`."""
    m = TABLES["reference"].alias()
    pks = select(m.c.resource_pk).where(m.c.type == type_, m.c.param.in_(params), target(m))
    return lambda p: p.c.resource_pk.in_(pks)


def _having(type_: str, param: str, system: str | None, code: str) -> RowFilter:
    """Resources of `type_` with the token `param` = [system|]code."""
    t = TABLES["token"].alias()
    conditions = [t.c.type == type_, t.c.param == param, t.c.code == code]
    if system is not None:
        conditions.append(t.c.system == system)
    pks = select(t.c.resource_pk).where(*conditions)
    return lambda p: p.c.resource_pk.in_(pks)


def _ids_of(type_: str, param: str, target_type: str, target_id: str) -> Any:
    """Ids of the `type_` resources whose `param` references target_type/target_id."""
    m = TABLES["reference"].alias()
    pks = select(m.c.resource_pk).where(
        m.c.type == type_,
        m.c.param == param,
        m.c.target_type == target_type,
        m.c.target_id == target_id,
    )
    return select(RESOURCE.c.id).where(RESOURCE.c.type == type_, RESOURCE.c.pk.in_(pks))


def _cpts_of(practitioner_roles: Any) -> Any:
    """The Organizations of the given PractitionerRoles that are active."""
    o = TABLES["reference"].alias()
    pks = select(RESOURCE.c.pk).where(
        RESOURCE.c.type == "PractitionerRole", RESOURCE.c.id.in_(practitioner_roles)
    )
    return select(o.c.target_id).where(
        o.c.type == "PractitionerRole",
        o.c.param == "organization",
        o.c.target_type == "Organization",
        o.c.resource_pk.in_(pks),
        _having("PractitionerRole", "active", None, "true")(o),
    )
