"""Everything that touches the outside world, one module per backend. Never imports kopf."""
