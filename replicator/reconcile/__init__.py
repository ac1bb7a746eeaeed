"""The reconcile stage: prove that the target holds exactly the source's rows.

See replicator/reconcile/checker.py for the steps and replicator/canonical.py for the encoding.
"""
