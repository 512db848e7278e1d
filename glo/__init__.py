"""GLO: Generative Latent Optimization (port of the clvrai/gitlimlab TF 1.2 implementation)."""
