"""Training logic: base model, chat format, loss masking, device plan, trainer setup/fit, monitoring, plots, merge."""
