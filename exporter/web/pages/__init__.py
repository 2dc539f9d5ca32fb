"""The landing page and its fragments: pure functions of a snapshot."""
