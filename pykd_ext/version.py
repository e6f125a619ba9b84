"""The package version, in a module of its own so any layer can read it without importing
the package root (which serves the API lazily)."""
__version__ = "0.1.0"
