"""Security: who asks (authentication), what they may do (authorisation by scope, role and
relation to the patient, and the patient's consent), and the audit trail of every access."""
