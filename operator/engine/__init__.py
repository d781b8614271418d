"""plan -> apply -> record -> recover. Fault catalog, selection. No kopf imports."""
