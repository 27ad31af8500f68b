"""One contract suite per subsystem, run against every implementation."""
