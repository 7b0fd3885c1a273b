"""The shim side: building the LD_PRELOAD library (build), its C declarations
for cffi (cdefs), and the reader of the counters region it writes (region)."""
