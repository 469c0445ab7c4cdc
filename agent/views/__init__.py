"""The views of a run: terminal status, the static HTML report, the live line while slots train, the plots.

They read the journal and the run files only (never the controller), so they work on any run directory,
beside a live controller or long after it ended; the controller drives two of them (the live line, the
block-tree plot at block end).
"""
