"""The bigWAE random search, in parts; launch/ray_sweep.py runs it on Ray.

`trials` samples a sweep's trials (configs/sweep.py), makes each one's config, runs it
(training, then every kept checkpoint's evaluation, in subprocesses) and keeps its best
checkpoint by FID; `results` writes the table and the figures from the finished trials;
`python -m wae_jax.sweep` (`__main__`) is the evaluation a trial runs. What a sweep would
cost on a TPU or GPU topology is wae_jax.accelerators.sweep_plan, beside the AOT compiler.
"""
