"""prime-tofu-exporter: catches TOFU certificate drift in Cisco Prime Infrastructure."""

__version__ = "0.1.0"
