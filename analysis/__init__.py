"""analysis: from the response export to the report (docs/analysis.md, docs/analysis-models.md, docs/analysis-report.md).

load (read and check the export) -> exclusions -> descriptives -> models (glmer by
the engines mixedlm or lme4/blme, checked by diagnostics) -> contrasts -> figures ->
report; pipeline runs that chain,
simulate draws synthetic participants from a known model, power simulates whole
studies, cli holds ``maco-study analyze`` and ``maco-study power``.
Never imports torch or flask.
"""
