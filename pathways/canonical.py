"""The canonical URLs and identifier systems of the pathway engine, in one place: every module
and the conformance resources of profiles/ name the same things the same way."""

BASE = "https://cpts-fhir.org/fhir"

PLAN_PREFIX = f"{BASE}/PlanDefinition/"
CAREPLAN_PROFILE = f"{BASE}/StructureDefinition/pathway-careplan"
TASK_PROFILE = f"{BASE}/StructureDefinition/pathway-task"
PATHWAY_EXTENSION = f"{BASE}/StructureDefinition/pathway"
STEP_EXTENSION = f"{BASE}/StructureDefinition/pathway-step"
FUNDING_EXTENSION = f"{BASE}/StructureDefinition/funding-source"

PATHWAY_SYSTEM = f"{BASE}/CodeSystem/pathway"
STEP_SYSTEM = f"{BASE}/CodeSystem/pathway-step"
ROLE_SYSTEM = f"{BASE}/CodeSystem/care-role"
FUNDING_SYSTEM = f"{BASE}/CodeSystem/funding-source"
BUSINESS_STATUS_SYSTEM = f"{BASE}/CodeSystem/task-business-status"
COORDINATION_SYSTEM = f"{BASE}/CodeSystem/coordination-task"

CAREPLAN_IDENTIFIER = f"{BASE}/sid/pathway-careplan"
TASK_IDENTIFIER = f"{BASE}/sid/pathway-task"
NOTICE_IDENTIFIER = f"{BASE}/sid/admission-notice"
FLAG_IDENTIFIER = f"{BASE}/sid/rehospitalisation"
