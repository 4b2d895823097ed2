"""Terminal rendering of runs: Rich renderables and the pieces the replay is made of.

Nothing in the core imports this package; it reads runs through ``collab.log.store``.
"""
