"""prime-tofu-exporter: catches TOFU certificate drift in Cisco Prime Infrastructure."""
