"""Where stored trust comes from: one package per kind of trust-on-first-use store."""
