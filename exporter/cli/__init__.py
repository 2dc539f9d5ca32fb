"""The command line: one module per command, one event-loop entry point."""

import warnings

# asyncssh names cryptography's DSA types when it is imported, and cryptography >= 51 warns
# about each such name (as the TLS probe's key description does, for a DSA leaf). Neither is
# the operator's to act on, and the warning would break the CLI's contract of one line on
# stderr for an error; so the command line, and only it, hides that one deprecation.
warnings.filterwarnings("ignore", message=r"(SSH )?DSA (key support )?is deprecated")
