"""Events out (CONTRACT §10): endpoints, the SSRF guard, signing and at-least-once delivery."""
