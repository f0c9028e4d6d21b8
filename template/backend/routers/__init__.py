"""API routers, one module per model; ``main.py`` mounts every module's ``router``."""
