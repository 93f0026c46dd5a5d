"""Attestation-gated release of model keys: a relying-party service of its own.

A model's weights are sealed with AES-256-GCM (``sealing``); the key stays with this service
(``keystore``), bound to zones and optionally to workload executable hashes. ``release`` gives a
key only to a caller with a valid PoG token for one of those zones, bound (``cnf``) to a key the
caller proves it holds, and returns it wrapped to the caller's key (JWE ECDH-ES+A256KW), never in
clear. Every release and refusal is recorded (``ledger``).
"""
