"""Report writers: render the core's report model for people and programs."""
