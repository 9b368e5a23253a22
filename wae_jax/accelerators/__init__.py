"""Hardware this machine need not have: compile for TPU pods and GPUs, and what a step costs.

`aot` compiles a run's train step for a topology (`python -m wae_jax.accelerators.aot`),
`hardware` holds the chips' published figures, `flops` counts a step's model FLOPs,
`sweep_plan` gives a sweep's chip-hours (`launch/ray_sweep.py --plan`).
"""
