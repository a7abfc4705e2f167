"""Consent: guardians' and the child's consent (samtycke) to disclose, its withdrawal, and decisions."""
