"""Process exit codes of the commands, one definition (check, remediate, config check)."""

OK = 0
MISMATCH = 1  # check: a proven mismatch, the actionable case first
FAILED = 1  # remediate: a step was skipped or did not take
ERROR = 2  # bad config or input, or a store unreadable
UNKNOWN = 3  # check: entries left undecided
