"""Training engine: hooks and helpers around mmengine Runner."""
