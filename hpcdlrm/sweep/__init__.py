"""Stage 4: asynchronous Nevergrad sweeps whose trials are (multi-node) Slurm jobs via submitit.

``python -m hpcdlrm.sweep`` runs one; ``hpcdlrm.sweep.store.load_sweep(sweep_dir)`` reads its store
(the report layer's input). Importing this package imports nothing heavy.
"""
