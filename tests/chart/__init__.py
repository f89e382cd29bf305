"""Tests of the Helm chart in ``charts/opsgenie-dx-relay`` and of the ``Dockerfile``.

The chart is rendered by Helm's own Go code (``helm-python-sdk`` bundles it), so values are
checked against ``values.schema.json`` exactly as ``helm install`` would check them.
"""
