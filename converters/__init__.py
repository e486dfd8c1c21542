"""Format conversions: one module per hop. Installed as `edgekit.converters` (see README: Packaging).

Modules here know file formats, not model names or the CLI.
"""
