"""The metric table and the Prometheus text exposition."""
