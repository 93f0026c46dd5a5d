"""API keys with roles for the operator routes of the registrar and the verifier, and the audit
of every mutating call. Not to be confused with the PoR/PoG *tokens* the verifier issues."""
