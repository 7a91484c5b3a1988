"""Workflow definitions: the frozen model, parsing and building it, validating it, its forms and templates,
and the registry of the node types a definition may use."""
