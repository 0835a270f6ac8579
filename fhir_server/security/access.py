"""What a principal may see and do, decided per resource type and, for patient data, per
patient, in SQL: the search adds `Access.condition` to every query that returns resources.

A type is reached in one of four modes: every resource of it (`ALL`), only those of the
patients the caller is related to (`RELATED`), only the launch patient's (`PATIENT`, who must
be related to a professional too), or none. The relation (docs/security.md):

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

The relation is read once per unit of work (the caller's PractitionerRoles, then one query for
the related and the opposing patients) and goes into the queries as lists: a search then costs
what it costs without security plus one index probe per candidate. A change of care team or of
consent applies to the next request. Within a unit of work the relation is read again after a
write that can change it (a CareTeam, a Task, a CarePlan, a Consent, a PractitionerRole), and
the writes themselves are judged by the relation as it stood before the first of them
(`before_writes`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from datetime import UTC, datetime
from enum import Enum
from functools import cache
from typing import Any

from cachetools import LRUCache
from sqlalchemy import (
    ColumnElement,
    FromClause,
    and_,
    bindparam,
    exists,
    false,
    literal,
    not_,
    or_,
    select,
    union,
    union_all,
)

from fhir_server.caches import Kept
from fhir_server.engine.unit_of_work import Change, UnitOfWork
from fhir_server.search.compartment import compartment_params
from fhir_server.search.sql import RESOURCE, TABLES, index_table
from fhir_server.security.principal import COORDINATOR, Principal
from fhir_server.security.relations import Relations, epoch
from fhir_server.security.roles import OPEN, ROLE_TABLE, Role, patient_data
from fhir_server.storage.lists import among, id_list, not_among
from fhir_server.storage.schema import reference_index

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

    def __init__(self, principal: Principal, relations: Relations | None = None) -> None:
        self.principal = principal
        self.relations = relations or Relations()
        self.roles: list[Role] = [ROLE_TABLE[r] for r in sorted(principal.roles) if r in ROLE_TABLE]
        self._modes: dict[tuple[str, str], Mode | None] = {}
        self._related: tuple[UnitOfWork, list[str], list[str]] | None = None
        self._before: tuple[UnitOfWork, list[str], list[str]] | None = None
        self._changed: UnitOfWork | None = None  # a unit of work that changed a relation

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
        open_type = type_ in OPEN or type_ not in patient_data()
        if "system" in contexts and p.is_system:
            # A system client has no relation to anyone: patient data only through a role not
            # bound by one (hospital).
            bound = all(r.relation for r in roles)
            return None if bound and not open_type else Mode.ALL
        if "user" in contexts and p.fhir_user is not None:
            if open_type:
                return Mode.ALL
            return Mode.RELATED if all(r.relation for r in roles) else Mode.ALL
        if "patient" in contexts and p.patient is not None:
            return Mode.ALL if type_ in OPEN else Mode.PATIENT
        return None

    def operation(self, name: str) -> bool:
        return any(name in r.operations for r in self.roles)

    # -- visibility ------------------------------------------------------------------------

    def condition(
        self, uow: UnitOfWork, r: FromClause, types: Sequence[str], bind: bool = False
    ) -> Condition | None:
        """Rows of `r` (of `types`) the principal may read; None: all of them. With `bind`,
        the relation's lists are the bind parameters `bound` names."""
        modes = {t: self.mode(t, "r") for t in types}
        if all(m is Mode.ALL for m in modes.values()):
            return None
        parts: list[Condition] = []
        whole = [t for t, m in modes.items() if m is Mode.ALL]
        if whole:
            parts.append(r.c.type.in_(whole))
        for t, m in modes.items():
            if m is None or m is Mode.ALL:
                continue
            allowed, denied = self.patients(uow, m, t)
            if bind:
                belongs = _belongs(
                    r,
                    t,
                    id_list(f"allowed_{t}", allowed),
                    id_list(f"denied_{t}", denied) if denied else [],
                )
            elif r is RESOURCE:
                belongs = _BUILT.belongs(t, allowed, denied)
            else:
                belongs = _belongs(r, t, allowed, denied)
            # Of one type, the rows are already of that type (every query restricts it): a
            # test on the type would lead SQLite to walk the type's rows instead of the
            # criterion's.
            parts.append(belongs if len(modes) == 1 else and_(r.c.type == t, belongs))
        return or_(*parts) if parts else false()

    def bound(self, uow: UnitOfWork, types: Sequence[str]) -> tuple[Hashable, dict[str, Any]]:
        """The shape of `condition(..., bind=True)` on `types` (what its SQL depends on), and
        the values of its bind parameters."""
        shape: list[tuple[str, Mode | None, bool]] = []
        values: dict[str, Any] = {}
        for t in types:
            mode = self.mode(t, "r")
            if mode is None or mode is Mode.ALL:
                shape.append((t, mode, False))
                continue
            allowed, denied = self.patients(uow, mode, t)
            shape.append((t, mode, bool(denied)))
            values[f"allowed_{t}"], values[f"denied_{t}"] = allowed, denied
        return tuple(shape), values

    def patients(
        self, uow: UnitOfWork, mode: Mode, type_: str, before: bool = False
    ) -> tuple[list[str], list[str]]:
        """(visible patients, patients opposing exchange) for resources of `type_` in `mode`:
        the related ones, or the launch patient, which a professional must be related to as
        well; `before`: as the relation stood before the first write of `uow`. An opposition
        does not hide the Consents, so that it can be withdrawn."""
        allowed, denied = self.before_writes(uow) if before else self.related(uow)
        if type_ == "Consent":
            denied = []
        if mode is Mode.RELATED:
            return allowed, denied
        patient = self.principal.patient or ""
        if not any(r.relation for r in self.roles):
            return [patient], []
        return ([patient] if patient in allowed else []), denied

    def visible(self, uow: UnitOfWork, type_: str, ids: set[str]) -> set[str]:
        """Those of the stored resources `type_`/`ids` the caller may see now."""
        mode = self.mode(type_, "r")
        if mode is Mode.ALL:
            return set(ids)
        if mode is None or not ids:
            return set()
        return self._ids(uow, type_, ids, *self.patients(uow, mode, type_))

    def writable(self, uow: UnitOfWork, change: Change, created: set[str]) -> bool:
        """Whether the caller could write the version `change` stored: all its patients
        visible before the first write of `uow`, or created in it (a new patient comes with its
        CareTeam). Judged on the version's own index rows, with the rule of `_belongs`: no
        query."""
        mode = self.mode(change.type, "r")
        if mode is Mode.ALL:
            return True
        if mode is None:
            return False
        allowed, denied = self.patients(uow, mode, change.type, before=True)
        permitted, refused = set(allowed) | created, set(denied)
        if change.type == "Patient":
            return change.id in permitted and change.id not in refused
        codes = compartment_params("Patient", change.type) or []
        if not codes:
            return False
        for row in change.index.get(reference_index(change.type), []):
            if row["param"] not in codes:
                continue
            if row["target_type"] == "Patient":
                if row["target_id"] not in permitted or row["target_id"] in refused:
                    return False
            elif row["target_type"] is None and _unknown_patient(row):
                return False
        return True

    @staticmethod
    def _ids(
        uow: UnitOfWork, type_: str, ids: set[str], allowed: list[str], denied: list[str]
    ) -> set[str]:
        if type_ == "Patient":  # a patient is visible when it is one of the lists': no query
            return (ids & set(allowed)) - set(denied)
        uow.repository.flush()  # the index rows of this unit of work's writes
        values = {"ids": sorted(ids), "allowed": allowed, "denied": denied}
        return set(uow.conn.execute(_visible_ids(type_), values).scalars())

    def sees(self, uow: UnitOfWork, type_: str, patients: set[str]) -> bool:
        """Whether content about `patients` (a past version, say) is visible in `type_`."""
        mode = self.mode(type_, "r")
        if mode is Mode.ALL:
            return True
        if mode is None:
            return False
        allowed, denied = self.patients(uow, mode, type_)
        return patients <= set(allowed) and not patients & set(denied)

    def before_writes(self, uow: UnitOfWork) -> tuple[list[str], list[str]]:
        """The relation as it stood before the first write of `uow`: what its writes are
        judged by, so that nobody relates themselves to a patient by writing (a Task they own,
        a Consent naming them, a Task moved to another patient)."""
        if self._before is None or self._before[0] is not uow:
            self._before = (uow, *self.related(uow))
        return self._before[1], self._before[2]

    def forget(self, uow: UnitOfWork) -> None:
        """A write of `uow` may have changed the relation: read it again, from the data (the
        kept patients are of the committed epoch)."""
        self._related, self._changed = None, uow

    def related(self, uow: UnitOfWork) -> tuple[list[str], list[str]]:
        """(ids of the patients related to the caller, ids of those opposing exchange with
        them), read once per unit of work, or kept from an earlier request of the same epoch
        (`fhir_server.security.relations`)."""
        if self._related is not None and self._related[0] is uow:
            return self._related[1], self._related[2]
        uow.repository.flush()
        me_type, _, me_id = (self.principal.fhir_user or "/").partition("/")
        practitioner = me_type == "Practitioner"
        coordinator = practitioner and COORDINATOR in self.principal.roles
        caller = (self.principal.fhir_user, coordinator)
        at = None if self._changed is uow else epoch(uow.conn)
        patients = self.relations.get(caller, at) if at is not None else None
        if patients is None:
            values: dict[str, Any] = {"me_type": me_type, "me_id": me_id, "roles": [], "orgs": []}
            if practitioner:  # the PractitionerRoles the caller acts through, and their CPTS
                for role, organization, active in uow.conn.execute(_ROLES, {"me_id": me_id}):
                    values["roles"].append(role)
                    if organization and active:
                        values["orgs"].append(organization)
            values["moment"] = datetime.now(UTC)
            found: dict[bool, set[str]] = {True: set(), False: set()}
            for opposing, patient in uow.conn.execute(_relation(coordinator), values):
                found[bool(opposing)].add(patient)
            patients = (sorted(found[False]), sorted(found[True]))
            if at is not None:
                self.relations.put(caller, at, patients)
        self._related = (uow, *patients)
        return patients


@cache
def _relation(coordinator: bool) -> Any:
    """The query of the related patients (opposing = 0) and of those opposing exchange
    (opposing = 1), for a caller `:me_type/:me_id` acting through the PractitionerRoles
    `:roles` (of the CPTS `:orgs`), at `:moment`. Built once per shape, so that SQLAlchemy
    compiles it once; each branch is an equality on the (type, param, target_id, target_type)
    index."""
    me = [
        ("me_type", lambda m: m.c.target_id == bindparam("me_id")),
        ("PractitionerRole", lambda m: among(m.c.target_id, id_list("roles"))),
    ]
    related = [
        _targets(
            "patient",
            _referencing("CareTeam", ("participant",), me),
            _having("status", None, "active"),
        ),
        _targets("patient", _referencing("Task", ("owner", "requester"), me)),
        _consenting(SHARING, me, everyone=False),
    ]
    if coordinator:
        cpts = [("Organization", lambda m: among(m.c.target_id, id_list("orgs")))]
        related.append(_targets("patient", _referencing("CarePlan", ("author",), cpts)))
    allowed = union(*related).subquery()
    denied = _consenting(OPPOSITION, me, everyone=True).subquery()
    return union_all(
        select(literal(0).label("opposing"), allowed.c.target_id),
        select(literal(1).label("opposing"), denied.c.target_id),
    )


# A reference target: (its type, or the name of the parameter holding it; a condition on the
# index row `m` of its id).
Target = tuple[str, Callable[[FromClause], Condition]]


def _is(m: FromClause, targets: list[Target]) -> Condition:
    return or_(
        *[and_(_target_type(m, target_type), matches(m)) for target_type, matches in targets]
    )


def _target_type(m: FromClause, target_type: str) -> Condition:
    if target_type == "me_type":
        return m.c.target_type == bindparam("me_type")
    return m.c.target_type == target_type


@cache
def _visible_ids(type_: str) -> Any:
    """Which of the resources `type_`/`:ids` belong only to `:allowed` patients, none of them
    `:denied`: built once per type (reads by id and checks of writes are frequent)."""
    r = RESOURCE
    return select(r.c.id).where(
        r.c.type == type_,
        among(r.c.id, id_list("ids")),
        _belongs(r, type_, id_list("allowed"), id_list("denied")),
    )


def _belongs(r: FromClause, type_: str, allowed: Any, denied: Any) -> Condition:
    """A resource of `type_` all of whose patients are `allowed` and not `denied` (lists, or
    parameters of `id_list`)."""
    any_denied = not isinstance(denied, list) or bool(denied)
    if type_ == "Patient":
        ok = among(r.c.id, allowed)
        return and_(ok, not_among(r.c.id, denied)) if any_denied else ok
    codes = compartment_params("Patient", type_) or []
    if not codes:
        return false()
    x = index_table("reference", [type_]).alias()
    outside = not_among(x.c.target_id, allowed)
    if any_denied:
        outside = or_(outside, among(x.c.target_id, denied))
    # A patient this server cannot name (an absolute URL, an identifier alone) is not one the
    # caller is known to be related to (`_unknown_patient` for one row).
    unknown = and_(
        x.c.target_type.is_(None),
        or_(
            x.c.url.contains("/Patient/"),
            and_(
                among(x.c.param, id_list(value=_PATIENT_PARAMS)), x.c.identifier_value.is_not(None)
            ),
        ),
    )
    return not_(
        exists(
            select(x.c.resource_pk).where(
                x.c.resource_pk == r.c.pk,
                among(x.c.param, id_list(value=codes)),
                or_(and_(x.c.target_type == "Patient", outside), unknown),
            )
        )
    )


_PATIENT_PARAMS = ("patient", "subject")


class _Built:
    """The conditions `_belongs` built on `resource` for the relation lists kept between
    requests (`Relations`): the same lists give the same condition, built once (building it
    is a fraction of a millisecond of SQLAlchemy work per request). Keyed by the lists'
    identity, which the entry holds on to, so that a reused id never matches."""

    def __init__(self, size: int = 256) -> None:
        self._built: Kept[tuple[str, int, int], tuple[list, list, Condition]] = Kept(LRUCache(size))

    def belongs(self, type_: str, allowed: list[str], denied: list[str]) -> Condition:
        key = (type_, id(allowed), id(denied))
        kept = self._built.get(key)
        if kept is not None and kept[0] is allowed and kept[1] is denied:
            return kept[2]
        condition = _belongs(RESOURCE, type_, allowed, denied)
        self._built.put(key, (allowed, denied, condition))
        return condition


_BUILT = _Built()


def _unknown_patient(row: dict[str, Any]) -> bool:
    """Whether a reference index row without a local target names a patient nonetheless."""
    url = row["url"] or ""
    return "/Patient/" in url or (
        row["param"] in _PATIENT_PARAMS and row["identifier_value"] is not None
    )


# Conditions on index rows `p` (of the reference table), about the resource they belong to.
RowFilter = Callable[[FromClause], Condition]


def _consents(category: str, me: list[Target], everyone: bool) -> list[RowFilter]:
    """Filters of Consents: active, of `category` (v3 ActCode), over a period covering now,
    naming the caller, or (`everyone`) naming no one."""
    moment = bindparam("moment")

    def in_period(p: FromClause) -> Condition:
        d = TABLES["date"].alias()
        return not_(
            exists(
                select(d.c.resource_pk).where(
                    d.c.resource_pk == p.c.resource_pk,
                    d.c.param == "period",
                    or_(d.c.low > moment, d.c.high <= moment),
                )
            )
        )

    def addressed(p: FromClause) -> Condition:
        actor = TABLES["reference"].alias()
        named = select(actor.c.resource_pk).where(
            actor.c.resource_pk == p.c.resource_pk, actor.c.param == "actor"
        )
        naming_me = exists(named.where(_is(actor, me)))
        return or_(naming_me, not_(exists(named))) if everyone else naming_me

    return [
        _having("status", None, "active"),
        _having("category", ACT_CODE, category),
        in_period,
        addressed,
    ]


def _targets(param: str, resources: Any, *filters: RowFilter) -> Any:
    """Ids of the Patients that the `resources` (a select of resource pks: few) passing
    `filters` reference by `param`. A join from those resources, so that the planner walks
    them and not every `param` row of their type."""
    k = resources.subquery()
    p = TABLES["reference"].alias()
    return (
        select(p.c.target_id)
        .select_from(k.join(p, p.c.resource_pk == k.c.resource_pk))
        .where(p.c.param == param, p.c.target_type == "Patient", *[f(p) for f in filters])
    )


def _consenting(category: str, me: list[Target], everyone: bool) -> Any:
    """Ids of the Patients of the Consents of `category` that apply to the caller (there are
    few Consents: their patient rows drive)."""
    p = TABLES["reference"].alias()
    return select(p.c.target_id).where(
        p.c.type == "Consent",
        p.c.param == "patient",
        p.c.target_type == "Patient",
        *[f(p) for f in _consents(category, me, everyone)],
    )


def _referencing(type_: str, params: tuple[str, ...], targets: list[Target]) -> Any:
    """The pks of the resources of `type_` with a `params` reference to one of `targets`.
    One indexed select per parameter and target type, not one OR that no index serves."""
    selects = []
    for param in params:
        for target_type, matches in targets:
            m = TABLES["reference"].alias()
            selects.append(
                select(m.c.resource_pk).where(
                    m.c.type == type_,
                    m.c.param == param,
                    matches(m),
                    _target_type(m, target_type),
                )
            )
    return union_all(*selects)


def _having(param: str, system: str | None, code: str) -> RowFilter:
    """Resources with the token `param` = [system|]code, checked per resource through the
    index on resource_pk (every active CareTeam would be a long list). The type is left out on
    purpose: the row's resource has it, and with it SQLite prefers the (type, param, code)
    index and walks every active CareTeam for each candidate."""

    def check(p: FromClause) -> Condition:
        t = TABLES["token"].alias()
        conditions = [t.c.resource_pk == p.c.resource_pk, t.c.param == param, t.c.code == code]
        if system is not None:
            conditions.append(t.c.system == system)
        return exists(select(t.c.resource_pk).where(*conditions))

    return check


def _practitioner_roles() -> Any:
    """The caller's PractitionerRoles (:me_id a Practitioner): id, Organization, active."""
    practitioner, organization = TABLES["reference"].alias(), TABLES["reference"].alias()
    active = TABLES["token"].alias()
    r = RESOURCE
    return (
        select(r.c.id, organization.c.target_id, active.c.code == "true")
        .select_from(
            r.outerjoin(
                organization,
                and_(
                    organization.c.resource_pk == r.c.pk,
                    organization.c.param == "organization",
                    organization.c.target_type == "Organization",
                ),
            ).outerjoin(active, and_(active.c.resource_pk == r.c.pk, active.c.param == "active"))
        )
        .where(
            r.c.pk.in_(
                select(practitioner.c.resource_pk).where(
                    practitioner.c.type == "PractitionerRole",
                    practitioner.c.param == "practitioner",
                    practitioner.c.target_id == bindparam("me_id"),
                    practitioner.c.target_type == "Practitioner",
                )
            )
        )
    )


_ROLES = _practitioner_roles()
