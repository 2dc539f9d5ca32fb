"""The running exporter: loops, state per store, the snapshot they make."""
