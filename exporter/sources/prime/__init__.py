"""Talking to Cisco Prime Infrastructure: its admin CLI output and how to read it."""
