"""Test kits: real servers and processes the tests drive (fixtures that wrap them live in conftest)."""
