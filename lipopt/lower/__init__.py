"""Certified lower bounds: sampled Jacobians, gradient ascent, adversarial pairs."""
