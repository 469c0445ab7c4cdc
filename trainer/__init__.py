"""GNN trainer: learns the FlyVis connectome ODE from simulated activity (MODEL.md sections 4-7).

Modules: ``model`` (the GNN), ``data`` (dataset files), ``schedule`` (iterations, phases, LRs),
``losses`` (loss and regularisers), ``metrics`` (recovered parameters, rollout), ``plots`` (slot
images), ``checkpoints`` (the R2 checkpoints, in the loop or on a background thread), ``train`` (the
loop), ``run`` and ``slot`` (command lines).
"""
