"""Resources: the external systems the assets talk to (storage, data sources, GPU, tracking)."""
