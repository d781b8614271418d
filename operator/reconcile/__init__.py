"""kopf handlers: thin; parse the body, call the engine, patch status (the operator issue)."""
