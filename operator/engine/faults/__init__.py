"""The fault catalog: one handler per kind, each implementing only apply and recover."""
