"""Remediation, from `mismatch` to fixed, in the order the seed's runbook does it: plan (pure),
render (pure), apply (the SSH edge). Re-exports nothing: importing plan loads no I/O."""
