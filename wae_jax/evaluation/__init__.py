"""How good a trained model is, and how runs compare.

evaluate.py is the `--mode=evaluate` driver: it builds one Context from a checkpoint (the
samples of each sampler of samplers.py: the prior, or a Gaussian mixture fitted to training
codes) and runs the evaluators (evaluators.py: sharpness, reconstruction, latent MMD, encoder
variance, FID), which write `eval/results.json`. FID (fid.py) takes its features from a
pluggable extractor: the offline MNIST classifier (mnist_classifier.py) or InceptionV3
(inception.py); metrics.py holds the pure metric functions and batching.py the one batching
helper, which splits every batch over the local devices. report.py turns several evaluated
workdirs into a markdown table, a figure and JSON, seeds of one row as mean and spread.
"""
