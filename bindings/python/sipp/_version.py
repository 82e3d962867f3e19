"""The binding's version: the libsipp version it was written for (include/sipp.h's
SIPP_VERSION_*; a configure-time check keeps the two equal)."""
__version__ = "0.1.0"
