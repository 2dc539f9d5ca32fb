"""Monitoring artefacts of prime-tofu-exporter, generated from one source (mixin style).

`python -m monitoring` writes the Prometheus rules, their promtool tests, the Kubernetes
PrometheusRule, the Grafana dashboard and its ConfigMap from the settings in settings.py;
`python -m monitoring --check` fails when a committed file differs from what it builds.
"""
