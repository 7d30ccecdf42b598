"""Demo data for the hub: a deterministic hardware-parts maker (generator) and its loader."""
