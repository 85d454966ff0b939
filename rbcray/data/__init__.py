"""Real data (paper Sec. 3): dataset registry, instance-mask formats, derived masks, statistics."""
