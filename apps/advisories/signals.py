"""What the advisories app announces to the apps above it (SPEC: apps depend one way).

The first two are sent after the import's transaction commits; receivers are registered by the
higher apps in their ``AppConfig.ready()`` (reviews: rescans and re-prioritisation).
"""

from django.dispatch import Signal

#: An import or sync created or changed advisories (their content, their severity carried
#: across aliases, or their exploitation evidence). Arguments: ``advisory_ids`` (list of
#: primary keys) and ``packages`` (list of ``(ecosystem_key, normalised_name)`` those
#: advisories name): projects depending on one of them may have new or changed APVs.
advisories_changed = Signal()

#: EPSS, KEV or NVD data changed the evidence, or NVD's CVSS changed the severity and score,
#: denormalised on these advisories (``advisory_ids``): their APVs' severity, CVSS score,
#: priority and SLA follow; no match changes.
exploitation_evidence_changed = Signal()

#: An import withdrew these advisories (``osv_ids``): they match nothing any more. Sent
#: synchronously, not after commit: what receivers write (reviews resolves the APVs)
#: belongs to the import.
advisories_withdrawn = Signal()
