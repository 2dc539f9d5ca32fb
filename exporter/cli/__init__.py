"""The command line: one module per command, one event-loop entry point."""

import warnings

# cryptography >= 51 deprecates DSA and finite-field Diffie-Hellman and warns wherever either is
# named: asyncssh names DSA types when it is imported, and the host-key reader speaks
# diffie-hellman-group14 on purpose, for RHEL 6/7-era sshd. Neither warning is the operator's to
# act on, and either would break the CLI's contract of one line on stderr for an error; so the
# command line, and only it, hides these two deprecations.
warnings.filterwarnings("ignore", message=r"(SSH )?DSA (key support )?is deprecated")
warnings.filterwarnings("ignore", message=r"Diffie-Hellman over finite fields \(FFDH\) is deprecated")
