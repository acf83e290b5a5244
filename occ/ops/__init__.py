from . import spconv_shim  # noqa: F401  (spconv CPU stream shim, applied once)
